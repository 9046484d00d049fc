"""An in-process stand-in for a CVAT server's REST API, for the tests.

No real CVAT server can run where these tests run: CVAT ships only as Docker
images and as source on GitHub, and neither is reachable here. So this module
imitates, faithfully but no further, the part of CVAT 2.x's REST API
(``/api/...``) that FiftyOne's CVAT annotation backend
(``fiftyone.utils.cvat.CVATAnnotationAPI``, FiftyOne 1.22) calls to upload
image tasks and download their annotations. It reports version
:data:`VERSION`, so FiftyOne takes its current code path (the one for every
server from 2.5 on: labels and jobs as paginated ``/api/labels?task_id=`` and
``/api/jobs?task_id=`` lists, files uploaded under their own names with
``sorting_method=predefined``, ``values`` required on every attribute). The
field names follow CVAT's OpenAPI schema as published with cvat-sdk.

What it serves (a trailing slash is accepted everywhere):

==========  ==================================  =========================================
method      path                                what
==========  ==================================  =========================================
GET         /api/server/about                   name, description, version (no login needed)
POST        /api/auth/login                     ``{username, password}`` -> ``{"key"}`` plus
                                                ``sessionid`` and ``csrftoken`` cookies;
                                                400 for wrong credentials
GET         /api/users[?search=]                paginated users
GET/POST    /api/tasks                          paginated tasks (``?name=``, ``?id=``) / create
                                                one with its labels and attribute specs
GET/DELETE  /api/tasks/<id>                     one task (``labels`` and ``jobs`` as URLs)
POST        /api/tasks/<id>/data                multipart ``client_files[i]`` images, ordered
                                                by ``sorting_method``; cuts the jobs; 202
GET         /api/tasks/<id>/data/meta           size, start/stop frame, frame filter, frames
                                                (name, width, height)
GET/PUT     /api/tasks/<id>/annotations         all shapes and tags / replace them (new ids)
GET         /api/labels?task_id=|job_id=        paginated labels with attribute spec ids
GET         /api/jobs?task_id=                  paginated jobs (``segment_size`` frames each)
GET         /api/jobs/<id>[/annotations]        one job / the shapes and tags of its frames
==========  ==================================  =========================================

Like CVAT it wants a login for everything but ``/api/server/about`` (401
otherwise), takes the session cookie or ``Authorization: Token <key>``, and
with the cookie checks Django's CSRF header (``X-CSRFToken``) on every
request that changes something (403 otherwise). Lists are paginated as CVAT
paginates them (``count``, ``next`` as a full URL, ``previous``,
``results``; 10 a page unless ``page_size`` says otherwise). Ids of tasks,
labels, attribute specs, jobs and shapes come from separate counters that
start at different numbers, as on a server with a history, so a client that
mixes one kind of id up with another fails. Bad requests get CVAT's 400 with a
JSON body naming the field.

A test plays the annotator with :meth:`FakeCvatServer.edit_task` (move, draw,
delete and relabel boxes, set attributes and the occluded flag, as one does
in CVAT's editor before pressing Save) and inspects what the server holds with
:meth:`FakeCvatServer.task`.

Not imitated: projects, organizations, tracks (video), masks, polygons,
skeletons, cloud storage, chunked (TUS) uploads, zip archives and server-side
files, exports in annotation formats, and the background request queue (the
data is processed before the 202 answer, so the jobs are there at once).

Example::

    with FakeCvatServer(users={"alice": "secret"}) as server:
        ...  # point the client at server.url
        server.edit_task("task_001", lambda job: job.draw(0, "vehicle", [1, 2, 30, 40]))
"""

import copy
import datetime
import hashlib
import http.server
import io
import json
import re
import secrets
import threading
import urllib.parse
from http.cookies import SimpleCookie

from PIL import Image

VERSION = "2.80.0"
"""The CVAT version reported by ``/api/server/about`` (cvat-sdk's latest on PyPI when written)."""

PAGE_SIZE = 10
"""CVAT's default page size."""

INPUT_TYPES = ("checkbox", "radio", "number", "text", "select")
SHAPE_TYPES = (
    "rectangle",
    "polygon",
    "polyline",
    "points",
    "ellipse",
    "cuboid",
    "mask",
    "skeleton",
)
SORTING_METHODS = ("lexicographical", "natural", "predefined", "random")
LABEL_COLORS = ("#33ddff", "#fa3253", "#34d1b7", "#ff007c", "#ddff33", "#24b353", "#b83df5")
FIRST_IDS = {"task": 7, "label": 31, "attribute": 101, "job": 12, "shape": 501}
"""Where each id counter starts (different, as on a server that has seen other work)."""


class BadRequest(Exception):
    """A request CVAT would refuse; becomes a JSON error answer."""

    def __init__(self, detail, status=400):
        super().__init__(detail)
        self.detail = detail
        self.status = status


class FakeCvatServer:
    """A threaded HTTP server on 127.0.0.1 that answers like CVAT 2.x (see the module).

    Use it as a context manager; :attr:`url` is where it listens.

    Args:
        users: user name -> password of the accounts that can log in
        version: the version ``/api/server/about`` reports
    """

    def __init__(self, users=None, version=VERSION):
        self.users = dict(users or {"annotator": "secret"})
        self.version = version
        self.requests = []
        """``(method, path, status)`` of every request served, in order (no query strings)."""
        self._lock = threading.RLock()
        self._ids = dict(FIRST_IDS)
        self._sessions = {}  # sessionid -> (user name, csrftoken)
        self._tokens = {}  # key -> user name
        self._tasks = {}  # id -> task (a dict, see create_task)
        self._jobs = {}  # id -> job
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self
        self._thread = None

    @property
    def url(self):
        """The server's base URL, ``http://127.0.0.1:<port>``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        """Starts serving in a background thread; returns the server."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops serving and closes the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # ----------------------------------------------------------------------- for the tests

    def task_names(self):
        """The names of the tasks on the server, in creation order (repeats included)."""
        with self._lock:
            return [task["name"] for task in self._tasks.values()]

    def task(self, name):
        """A snapshot of the one task called ``name``, with names instead of ids.

        Returns:
            a dict: ``id``, ``name``, ``segment_size``, ``labels`` (label name ->
            attribute name -> ``{input_type, mutable, values, default_value}``),
            ``frames`` (``{name, width, height, sha256}`` in frame order),
            ``jobs`` (``(start_frame, stop_frame)`` each), ``version`` (of the
            annotations) and ``shapes`` (``{id, frame (its name), label,
            points, occluded, attributes (name -> value text)}``)

        Raises:
            KeyError: if no task or several tasks have that name
        """
        with self._lock:
            task = self._task_named(name)
            frames = task["frames"]
            return {
                "id": task["id"],
                "name": task["name"],
                "segment_size": task["segment_size"],
                "labels": {
                    label["name"]: {
                        spec["name"]: {
                            key: spec[key]
                            for key in ("input_type", "mutable", "values", "default_value")
                        }
                        for spec in label["attributes"]
                    }
                    for label in task["labels"]
                },
                "frames": [
                    {key: frame[key] for key in ("name", "width", "height", "sha256")}
                    for frame in frames
                ],
                "jobs": [(job["start_frame"], job["stop_frame"]) for job in self._task_jobs(task)],
                "version": task["version"],
                "shapes": [_Shape(task, shape).as_dict() for shape in task["shapes"]],
            }

    def edit_task(self, name, edit):
        """Plays the annotator on the task called ``name``, then saves, as CVAT's editor does.

        ``edit`` gets an :class:`Annotator` for the task and changes its shapes
        through it; the changes are saved together (the annotations' version
        goes up by one). Edited shapes keep their ids, drawn ones get new ids.
        ``edit`` runs holding the server's lock: it must not call the server
        over HTTP.

        Args:
            name: the task's name
            edit: a callable taking an :class:`Annotator`

        Returns:
            what ``edit`` returned
        """
        with self._lock:
            task = self._task_named(name)
            annotator = Annotator(self, task)
            result = edit(annotator)
            task["version"] += 1
            task["updated_date"] = _now()
            return result

    # ----------------------------------------------------------------------- state

    def _next_id(self, kind):
        with self._lock:
            value = self._ids[kind]
            self._ids[kind] += 1
            return value

    def _task_named(self, name):
        found = [task for task in self._tasks.values() if task["name"] == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} tasks are called {name!r} (expected one)")
        return found[0]

    def _task_jobs(self, task):
        return [job for job in self._jobs.values() if job["task_id"] == task["id"]]

    def _user(self, name):
        return {
            "url": f"{self.url}/api/users/{self._user_id(name)}",
            "id": self._user_id(name),
            "username": name,
            "first_name": "",
            "last_name": "",
        }

    def _user_id(self, name):
        return sorted(self.users).index(name) + 1

    # ----------------------------------------------------------------------- API: auth, server

    def about(self):
        return {
            "name": "Computer Vision Annotation Tool",
            "subtitle": "",
            "description": "A stand-in for CVAT's REST API, for platelab's tests.",
            "version": self.version,
            "logo_url": "",
        }

    def login(self, body):
        username, password = body.get("username"), body.get("password")
        if not password or (not username and not body.get("email")):
            raise BadRequest({"password": ["This field is required."]})
        if username not in self.users or self.users[username] != password:
            raise BadRequest({"non_field_errors": ["Unable to log in with provided credentials."]})
        session, csrf, key = secrets.token_hex(16), secrets.token_hex(16), secrets.token_hex(20)
        with self._lock:
            self._sessions[session] = (username, csrf)
            self._tokens[key] = username
        return {"key": key}, {"sessionid": session, "csrftoken": csrf}

    def authenticate(self, method, headers, cookies):
        """The logged-in user, or raises 401/403 as CVAT (Django REST framework) does."""
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Token "):
            user = self._tokens.get(authorization[len("Token ") :])
            if user is None:
                raise BadRequest({"detail": "Invalid token."}, 401)
            return user
        session = cookies.get("sessionid")
        if session in self._sessions:
            user, csrf = self._sessions[session]
            if method not in ("GET", "HEAD", "OPTIONS") and headers.get("X-CSRFToken") != csrf:
                raise BadRequest({"detail": "CSRF Failed: CSRF token missing or incorrect."}, 403)
            return user
        raise BadRequest({"detail": "Authentication credentials were not provided."}, 401)

    # ----------------------------------------------------------------------- API: tasks

    def create_task(self, body, user):
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest({"name": ["This field is required."]})
        if body.get("project_id") is not None:
            raise BadRequest({"project_id": ["Projects are not imitated by this test server."]})
        segment_size = body.get("segment_size", 0)
        if not isinstance(segment_size, int) or segment_size < 0:
            raise BadRequest({"segment_size": ["Ensure this value is greater than or equal to 0."]})
        labels = body.get("labels") or []
        if not labels:
            raise BadRequest({"label_set": ["Label set must not be empty"]})
        errors = [_label_errors(label) for label in labels]
        if any(errors):
            raise BadRequest({"labels": errors})
        names = [label["name"] for label in labels]
        if len(set(names)) != len(names):
            raise BadRequest({"labels": ["All label names must be unique"]})
        with self._lock:
            task_id = self._next_id("task")
            task = {
                "id": task_id,
                "name": name,
                "owner": user,
                "segment_size": segment_size,
                "overlap": body.get("overlap"),
                "bug_tracker": body.get("bug_tracker", ""),
                "created_date": _now(),
                "updated_date": _now(),
                "labels": [
                    self._create_label(label, task_id, LABEL_COLORS[index % len(LABEL_COLORS)])
                    for index, label in enumerate(labels)
                ],
                "frames": [],
                "image_quality": None,
                "frame_filter": "",
                "version": 0,
                "shapes": [],
                "tags": [],
            }
            self._tasks[task_id] = task
        return task

    def _create_label(self, body, task_id, color):
        attributes = []
        for spec in body.get("attributes", []):
            values = [str(value).strip() for value in spec["values"]]
            default = spec.get("default_value")
            if default is None:  # CVAT's choice when none is given
                defaults = {"checkbox": "false", "text": ""}
                default = defaults.get(spec["input_type"], values[0] if values else "")
            attributes.append(
                {
                    "id": self._next_id("attribute"),
                    "name": spec["name"],
                    "mutable": bool(spec.get("mutable", False)),
                    "input_type": spec["input_type"],
                    "default_value": default,
                    # CVAT stores the values joined by newlines: [] comes back as [""].
                    "values": "\n".join(values).split("\n"),
                }
            )
        return {
            "id": self._next_id("label"),
            "name": body["name"],
            "color": body.get("color") or color,
            "attributes": attributes,
            "type": body.get("type", "any"),
            "svg": "",
            "sublabels": [],
            "has_parent": False,
            "task_id": task_id,
            "project_id": None,
            "parent_id": None,
        }

    def task_json(self, task):
        jobs = self._task_jobs(task)
        frames = task["frames"]
        return {
            "url": f"{self.url}/api/tasks/{task['id']}",
            "id": task["id"],
            "name": task["name"],
            "project_id": None,
            "mode": "annotation" if frames else "",
            "owner": self._user(task["owner"]),
            "assignee": None,
            "bug_tracker": task["bug_tracker"],
            "created_date": task["created_date"],
            "updated_date": task["updated_date"],
            "overlap": task["overlap"],
            "segment_size": task["segment_size"] or len(frames),
            "status": "annotation",
            "data_chunk_size": 72 if frames else None,
            "data_compressed_chunk_type": "imageset",
            "data_original_chunk_type": "imageset",
            "size": len(frames),
            "image_quality": task["image_quality"] or 70,
            "data": task["id"] if frames else None,
            "dimension": "2d",
            "subset": "",
            "organization": None,
            "target_storage": None,
            "source_storage": None,
            "assignee_updated_date": None,
            "jobs": {
                "count": len(jobs),
                "completed": 0,
                "validation": 0,
                "url": f"{self.url}/api/jobs?task_id={task['id']}",
            },
            "labels": {"url": f"{self.url}/api/labels?task_id={task['id']}"},
        }

    def get_task(self, task_id):
        task = self._tasks.get(task_id)
        if task is None:
            raise BadRequest({"detail": "Not found."}, 404)
        return task

    def delete_task(self, task_id):
        with self._lock:
            task = self.get_task(task_id)
            for job in self._task_jobs(task):
                del self._jobs[job["id"]]
            del self._tasks[task_id]

    def upload_data(self, task, fields, files):
        """Attaches the uploaded images to the task and cuts its jobs (CVAT does this in a worker)."""
        if task["frames"]:
            raise BadRequest({"detail": "Data is already attached to this task."})
        if not files:
            raise BadRequest({"detail": "No media data found"})
        try:
            quality = int(fields.get("image_quality", ""))
        except ValueError:
            raise BadRequest({"image_quality": ["A valid integer is required."]}) from None
        if not 0 <= quality <= 100:
            raise BadRequest({"image_quality": ["Ensure this value is less than or equal to 100."]})
        sorting = fields.get("sorting_method", "lexicographical")
        if sorting not in SORTING_METHODS:
            raise BadRequest({"sorting_method": [f'"{sorting}" is not a valid choice.']})
        frames = []
        for field, (filename, content) in sorted(
            files.items(), key=lambda item: _field_index(item[0])
        ):
            if not re.fullmatch(r"client_files\[\d+\]", field):
                raise BadRequest({"detail": f"unexpected file field {field!r}"})
            try:
                with Image.open(io.BytesIO(content)) as image:
                    width, height = image.size
            except OSError:
                raise BadRequest({"detail": f"{filename}: not an image"}) from None
            frames.append(
                {
                    "name": filename,
                    "width": width,
                    "height": height,
                    "sha256": hashlib.sha256(content).hexdigest(),
                }
            )
        if sorting == "lexicographical":
            frames.sort(key=lambda frame: frame["name"])
        elif sorting == "natural":
            frames.sort(key=lambda frame: _natural_key(frame["name"]))
        elif sorting == "random":
            frames.sort(key=lambda frame: frame["sha256"])
        with self._lock:
            task["frames"] = frames
            task["image_quality"] = quality
            size = task["segment_size"] or len(frames)
            for start in range(0, len(frames), size):
                job_id = self._next_id("job")
                self._jobs[job_id] = {
                    "id": job_id,
                    "task_id": task["id"],
                    "start_frame": start,
                    "stop_frame": min(start + size, len(frames)) - 1,
                    "created_date": _now(),
                }
        return {"rq_id": f"create:task.id{task['id']}"}

    def data_meta(self, task):
        frames = task["frames"]
        if not frames:
            raise BadRequest({"detail": "Not found."}, 404)
        return {
            "chunk_size": 72,
            "size": len(frames),
            "image_quality": task["image_quality"],
            "start_frame": 0,
            "stop_frame": len(frames) - 1,
            "frame_filter": task["frame_filter"],
            "frames": [
                {
                    "width": frame["width"],
                    "height": frame["height"],
                    "name": frame["name"],
                    "related_files": 0,
                    "has_related_context": False,
                }
                for frame in frames
            ],
            "deleted_frames": [],
            "included_frames": None,
            "chunks_updated_date": task["updated_date"],
        }

    # ----------------------------------------------------------------------- API: annotations

    def put_annotations(self, task, body):
        """Replaces all of the task's annotations (CVAT's PUT); the saved ones get new ids."""
        if not isinstance(body, dict):
            raise BadRequest({"non_field_errors": ["Invalid data. Expected a dictionary."]})
        if body.get("tracks"):
            raise BadRequest({"tracks": ["Tracks are not imitated by this test server."]})
        shapes = [self._valid_annotation(task, item, shape=True) for item in body.get("shapes", [])]
        tags = [self._valid_annotation(task, item, shape=False) for item in body.get("tags", [])]
        with self._lock:
            task["shapes"], task["tags"] = shapes, tags
            task["version"] += 1
            task["updated_date"] = _now()
        return self.annotations(task)

    def _valid_annotation(self, task, item, shape):
        label = next(
            (label for label in task["labels"] if label["id"] == item.get("label_id")), None
        )
        if label is None:
            raise BadRequest({"detail": f"Label '{item.get('label_id')}' is not registered"})
        frame = item.get("frame")
        if not isinstance(frame, int) or not 0 <= frame < len(task["frames"]):
            raise BadRequest({"detail": f"Frame {frame!r} is out of the task's frame range"})
        specs = {spec["id"]: spec for spec in label["attributes"]}
        attributes = []
        for attribute in item.get("attributes", []):
            spec = specs.get(attribute.get("spec_id"))
            if spec is None:
                raise BadRequest(
                    {"detail": f"Attribute '{attribute.get('spec_id')}' is not registered"}
                )
            attributes.append({"spec_id": spec["id"], "value": str(attribute.get("value", ""))})
        saved = {
            "id": self._next_id("shape"),
            "frame": frame,
            "label_id": label["id"],
            "group": item.get("group") or 0,
            "source": item.get("source", "manual"),
            "attributes": attributes,
        }
        if shape:
            kind = item.get("type")
            if kind not in SHAPE_TYPES:
                raise BadRequest({"type": [f'"{kind}" is not a valid choice.']})
            if label["type"] not in ("any", kind):
                raise BadRequest(
                    {"detail": f"Label '{label['name']}' takes {label['type']} shapes"}
                )
            points = [float(value) for value in item.get("points", [])]
            if kind == "rectangle" and len(points) != 4:
                raise BadRequest({"points": ["A rectangle has 4 coordinates: x1, y1, x2, y2."]})
            saved.update(
                type=kind,
                occluded=bool(item.get("occluded", False)),
                outside=bool(item.get("outside", False)),
                z_order=int(item.get("z_order", 0)),
                rotation=float(item.get("rotation", 0.0)),
                points=points,
                elements=[],
            )
        return saved

    def annotations(self, task, frames=None):
        """The task's annotations as CVAT returns them, optionally only on ``frames``."""

        def kept(items):
            return [
                copy.deepcopy(item) for item in items if frames is None or item["frame"] in frames
            ]

        return {
            "version": task["version"],
            "tags": kept(task["tags"]),
            "shapes": kept(task["shapes"]),
            "tracks": [],
        }

    # ----------------------------------------------------------------------- API: jobs, labels

    def job_json(self, job):
        task = self._tasks[job["task_id"]]
        return {
            "url": f"{self.url}/api/jobs/{job['id']}",
            "id": job["id"],
            "task_id": task["id"],
            "project_id": None,
            "assignee": None,
            "guide_id": None,
            "dimension": "2d",
            "bug_tracker": None,
            "status": "annotation",
            "stage": "annotation",
            "state": "new",
            "mode": "annotation",
            "frame_count": job["stop_frame"] - job["start_frame"] + 1,
            "start_frame": job["start_frame"],
            "stop_frame": job["stop_frame"],
            "data_chunk_size": 72,
            "data_compressed_chunk_type": "imageset",
            "data_original_chunk_type": "imageset",
            "created_date": job["created_date"],
            "updated_date": task["updated_date"],
            "type": "annotation",
            "organization": None,
            "target_storage": None,
            "source_storage": None,
            "assignee_updated_date": None,
            "issues": {"url": f"{self.url}/api/issues?job_id={job['id']}", "count": 0},
            "labels": {"url": f"{self.url}/api/labels?job_id={job['id']}"},
        }

    def get_job(self, job_id):
        job = self._jobs.get(job_id)
        if job is None:
            raise BadRequest({"detail": "Not found."}, 404)
        return job


class Annotator:
    """What a person can do to one task in CVAT's editor (see :meth:`FakeCvatServer.edit_task`).

    Frames are named by their index or their file name; labels and
    attributes by their names. Attribute values are text as CVAT keeps them
    (checkboxes ``"true"``/``"false"``; Python booleans are converted).
    """

    def __init__(self, server, task):
        self._server = server
        self._task = task

    @property
    def frames(self):
        """The task's frame names, in frame order."""
        return [frame["name"] for frame in self._task["frames"]]

    def shapes(self, frame=None):
        """The shapes (all, or those on one frame) as editable :class:`_Shape` objects."""
        number = None if frame is None else self._frame_number(frame)
        return [
            _Shape(self._task, shape)
            for shape in self._task["shapes"]
            if number is None or shape["frame"] == number
        ]

    def draw(self, frame, label, points, occluded=False, **attributes):
        """Draws a new rectangle; its attributes start at their defaults, as in CVAT's editor.

        Args:
            frame: the frame's index or name
            label: the label's name
            points: ``[x1, y1, x2, y2]`` in pixels
            occluded: CVAT's occluded flag
            **attributes: attribute name -> value for the attributes set by hand

        Returns:
            the new :class:`_Shape`
        """
        shape = {
            "id": self._server._next_id("shape"),
            "type": "rectangle",
            "frame": self._frame_number(frame),
            "label_id": _label_named(self._task, label)["id"],
            "group": 0,
            "source": "manual",
            "occluded": bool(occluded),
            "outside": False,
            "z_order": 0,
            "rotation": 0.0,
            "points": [],
            "attributes": [],
            "elements": [],
        }
        drawn = _Shape(self._task, shape)
        drawn.points = points
        drawn.reset_attributes()
        for name, value in attributes.items():
            drawn.attributes[name] = value
        self._task["shapes"].append(shape)
        return drawn

    def delete(self, shape):
        """Deletes a shape."""
        self._task["shapes"].remove(shape._shape)

    def _frame_number(self, frame):
        if isinstance(frame, int):
            if not 0 <= frame < len(self._task["frames"]):
                raise ValueError(f"no frame {frame} in task {self._task['name']}")
            return frame
        names = self.frames
        if frame not in names:
            raise ValueError(f"no frame named {frame!r} in task {self._task['name']}")
        return names.index(frame)


class _Shape:
    """One shape as the annotator sees it: label and attributes by name, points in pixels."""

    def __init__(self, task, shape):
        self._task = task
        self._shape = shape

    @property
    def id(self):
        return self._shape["id"]

    @property
    def frame(self):
        """The name of the frame the shape is on."""
        return self._task["frames"][self._shape["frame"]]["name"]

    @property
    def label(self):
        return _label_by_id(self._task, self._shape["label_id"])["name"]

    @label.setter
    def label(self, name):
        """Changes the label; CVAT's editor then resets the attributes to the new label's defaults."""
        label = _label_named(self._task, name)
        if label["id"] != self._shape["label_id"]:
            self._shape["label_id"] = label["id"]
            self.reset_attributes()

    @property
    def points(self):
        return list(self._shape["points"])

    @points.setter
    def points(self, points):
        points = [float(value) for value in points]
        if len(points) != 4 or points[0] > points[2] or points[1] > points[3]:
            raise ValueError(f"not a rectangle [x1, y1, x2, y2]: {points}")
        self._shape["points"] = points
        self.complete_attributes()

    @property
    def occluded(self):
        return self._shape["occluded"]

    @occluded.setter
    def occluded(self, value):
        self._shape["occluded"] = bool(value)
        self.complete_attributes()

    @property
    def attributes(self):
        """Attribute name -> value text; setting an item checks it against the label's spec."""
        return _Attributes(self)

    def reset_attributes(self):
        """Sets every attribute of the shape's label to its default value."""
        self._shape["attributes"] = []
        self.complete_attributes()

    def complete_attributes(self):
        """Gives the attributes the shape lacks their default values.

        CVAT's editor holds every attribute of a shape it shows (missing ones
        at their defaults) and saves them all with a shape that was changed;
        shapes left alone are not saved again, so keep what was uploaded.
        """
        label = _label_by_id(self._task, self._shape["label_id"])
        present = {item["spec_id"] for item in self._shape["attributes"]}
        self._shape["attributes"] += [
            {"spec_id": spec["id"], "value": spec["default_value"]}
            for spec in label["attributes"]
            if spec["id"] not in present
        ]

    def as_dict(self):
        return {
            "id": self.id,
            "frame": self.frame,
            "label": self.label,
            "points": self.points,
            "occluded": self.occluded,
            "attributes": dict(self.attributes.items()),
        }

    def __repr__(self):
        return f"<shape {self.as_dict()}>"


class _Attributes:
    """The attribute values of one shape, by name (a small mutable mapping)."""

    def __init__(self, shape):
        self._shape = shape
        label = _label_by_id(shape._task, shape._shape["label_id"])
        self._specs = {spec["name"]: spec for spec in label["attributes"]}
        self._names = {spec["id"]: spec["name"] for spec in label["attributes"]}

    def items(self):
        return [
            (self._names[item["spec_id"]], item["value"])
            for item in self._shape._shape["attributes"]
        ]

    def __getitem__(self, name):
        return dict(self.items())[name]

    def get(self, name, default=None):
        return dict(self.items()).get(name, default)

    def __setitem__(self, name, value):
        spec = self._specs.get(name)
        if spec is None:
            raise KeyError(f"label {self._shape.label!r} has no attribute {name!r}")
        if isinstance(value, bool):
            value = "true" if value else "false"
        value = str(value)
        if spec["input_type"] == "checkbox" and value not in ("true", "false"):
            raise ValueError(f"checkbox {name!r} takes 'true' or 'false', not {value!r}")
        if spec["input_type"] in ("select", "radio") and value not in spec["values"]:
            raise ValueError(f"{name!r} takes one of {spec['values']}, not {value!r}")
        self._shape.complete_attributes()
        items = self._shape._shape["attributes"]
        for item in items:
            if item["spec_id"] == spec["id"]:
                item["value"] = value
                return
        items.append({"spec_id": spec["id"], "value": value})


# --------------------------------------------------------------------------- HTTP


class _Handler(http.server.BaseHTTPRequestHandler):
    """Routes a request to the :class:`FakeCvatServer` and writes its JSON answer."""

    protocol_version = "HTTP/1.1"
    server_version = "nginx"  # CVAT answers through its proxy
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass  # quiet: the tests read server.requests instead

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_PATCH(self):
        self._serve("PATCH")

    def do_DELETE(self):
        self._serve("DELETE")

    def _serve(self, method):
        fake = self.server.fake
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path.rstrip("/") or "/"
        query = dict(urllib.parse.parse_qsl(parsed.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        cookies = {
            name: morsel.value
            for name, morsel in SimpleCookie(self.headers.get("Cookie", "")).items()
        }
        try:
            status, answer, set_cookies = self._route(fake, method, path, query, body, cookies)
        except BadRequest as error:
            status, answer, set_cookies = error.status, error.detail, {}
        except (ValueError, KeyError, TypeError, AttributeError) as error:  # a malformed body
            status, answer, set_cookies = 400, {"detail": f"malformed request ({error!r})"}, {}
        except Exception as error:  # noqa: BLE001 - a bug here: answer as Django would
            status, answer, set_cookies = 500, {"detail": f"server error ({error!r})"}, {}
        fake.requests.append((method, path, status))
        self._answer(status, answer, set_cookies)

    def _route(self, fake, method, path, query, body, cookies):
        if path == "/api/server/about" and method == "GET":
            return 200, fake.about(), {}
        if path == "/api/auth/login" and method == "POST":
            answer, set_cookies = fake.login(_json(body))
            return 200, answer, set_cookies
        if not path.startswith("/api/"):
            raise BadRequest({"detail": "Not found."}, 404)
        user = fake.authenticate(method, self.headers, cookies)
        with fake._lock:
            return (*self._api(fake, user, method, path, query, body), {})

    def _api(self, fake, user, method, path, query, body):
        parts = path.split("/")[2:]  # after "/api"
        kind, key, rest = parts[0], parts[1] if len(parts) > 1 else None, parts[2:]
        if kind == "users" and key is None and method == "GET":
            search = query.get("search", "")
            users = [fake._user(name) for name in sorted(fake.users) if search in name]
            return 200, self._page(fake, path, query, users)
        if kind == "tasks" and key is None:
            if method == "POST":
                return 201, fake.task_json(fake.create_task(_json(body), user))
            if method == "GET":
                tasks = [
                    fake.task_json(task)
                    for task in fake._tasks.values()
                    if query.get("name") in (None, task["name"])
                    and query.get("id") in (None, str(task["id"]))
                ]
                return 200, self._page(fake, path, query, tasks)
        if kind == "tasks" and key is not None:
            task = fake.get_task(_id(key))
            if not rest and method == "GET":
                return 200, fake.task_json(task)
            if not rest and method == "DELETE":
                fake.delete_task(task["id"])
                return 204, None
            if rest == ["data"] and method == "POST":
                fields, files = _multipart(self.headers.get("Content-Type", ""), body)
                return 202, fake.upload_data(task, fields, files)
            if rest == ["data", "meta"] and method == "GET":
                return 200, fake.data_meta(task)
            if rest == ["annotations"] and method == "GET":
                return 200, fake.annotations(task)
            if rest == ["annotations"] and method == "PUT":
                return 200, fake.put_annotations(task, _json(body))
        if kind == "labels" and key is None and method == "GET":
            if "task_id" in query:
                labels = fake.get_task(_id(query["task_id"]))["labels"]
            elif "job_id" in query:
                labels = fake._tasks[fake.get_job(_id(query["job_id"]))["task_id"]]["labels"]
            else:
                labels = [label for task in fake._tasks.values() for label in task["labels"]]
            return 200, self._page(fake, path, query, copy.deepcopy(labels))
        if kind == "jobs" and key is None and method == "GET":
            jobs = [
                fake.job_json(job)
                for job in fake._jobs.values()
                if query.get("task_id") in (None, str(job["task_id"]))
            ]
            return 200, self._page(fake, path, query, jobs)
        if kind == "jobs" and key is not None:
            job = fake.get_job(_id(key))
            if not rest and method == "GET":
                return 200, fake.job_json(job)
            if rest == ["annotations"] and method == "GET":
                frames = range(job["start_frame"], job["stop_frame"] + 1)
                return 200, fake.annotations(fake._tasks[job["task_id"]], frames)
        raise BadRequest({"detail": f'Method "{method}" not allowed here or not found.'}, 405)

    def _page(self, fake, path, query, items):
        """One page of a list, as CVAT's paginator answers."""
        try:
            page = int(query.get("page", 1))
            size = int(query.get("page_size", PAGE_SIZE))
        except ValueError:
            raise BadRequest({"detail": "Invalid page."}, 404) from None
        pages = max(1, -(-len(items) // size))
        if not 1 <= page <= pages:
            raise BadRequest({"detail": "Invalid page."}, 404)

        def link(number):
            return f"{fake.url}{path}?{urllib.parse.urlencode(dict(query, page=number))}"

        return {
            "count": len(items),
            "next": link(page + 1) if page < pages else None,
            "previous": link(page - 1) if page > 1 else None,
            "results": items[(page - 1) * size : page * size],
        }

    def _answer(self, status, answer, set_cookies):
        data = b"" if answer is None else json.dumps(answer).encode("utf-8")
        self.send_response(status)
        if answer is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Vary", "Accept, Origin, Cookie")
        for name, value in set_cookies.items():
            extra = "; HttpOnly" if name == "sessionid" else ""
            self.send_header("Set-Cookie", f"{name}={value}; Path=/; SameSite=Lax{extra}")
        self.end_headers()
        self.wfile.write(data)


# --------------------------------------------------------------------------- helpers


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def _id(text):
    if not text.isdigit():
        raise BadRequest({"detail": "Not found."}, 404)
    return int(text)


def _json(body):
    try:
        return json.loads(body or b"{}")
    except ValueError as error:
        raise BadRequest({"detail": f"JSON parse error - {error}"}) from None


def _multipart(content_type, body):
    """Splits a multipart/form-data body into (fields, files: name -> (filename, bytes))."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or not match:
        raise BadRequest({"detail": "Unsupported media type in request (expected multipart)."}, 415)
    fields, files = {}, {}
    delimiter = b"--" + match.group(1).encode("latin-1")
    for part in body.split(delimiter)[1:-1]:
        head, _, content = part[2:].partition(b"\r\n\r\n")
        content = content[:-2]  # the CRLF before the next delimiter
        disposition = next(
            (
                line.decode("utf-8")
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-disposition:")
            ),
            "",
        )
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        if name is None:
            raise BadRequest({"detail": "multipart part without a name"})
        if filename is not None:
            files[name.group(1)] = (urllib.parse.unquote(filename.group(1)), content)
        else:
            fields[name.group(1)] = content.decode("utf-8")
    return fields, files


def _field_index(field):
    match = re.search(r"\[(\d+)\]$", field)
    return int(match.group(1)) if match else -1


def _natural_key(name):
    return [int(piece) if piece.isdigit() else piece for piece in re.split(r"(\d+)", name)]


def _label_errors(label):
    """CVAT 2.5+'s validation of one label of a new task: {} when fine."""
    errors = {}
    if not isinstance(label.get("name"), str) or not label["name"]:
        errors["name"] = ["This field is required."]
    attribute_errors = []
    for spec in label.get("attributes", []):
        problems = {}
        for field in ("name", "input_type", "values"):
            if field not in spec:
                problems[field] = ["This field is required."]
        if "input_type" in spec and spec["input_type"] not in INPUT_TYPES:
            problems["input_type"] = [f'"{spec["input_type"]}" is not a valid choice.']
        if spec.get("input_type") in ("select", "radio") and not spec.get("values"):
            problems["values"] = ["This list may not be empty."]
        attribute_errors.append(problems)
    if any(attribute_errors):
        errors["attributes"] = attribute_errors
    return errors


def _label_named(task, name):
    for label in task["labels"]:
        if label["name"] == name:
            return label
    raise KeyError(f"task {task['name']} has no label {name!r}")


def _label_by_id(task, label_id):
    return next(label for label in task["labels"] if label["id"] == label_id)
