"""Rendering vehicle models into sprites (images with a mask).

A sprite is the vehicle seen from one direction: front, rear or side, from a
camera elevation and azimuth, drawn at a scale in pixels per metre with
back-face culling and painter's order. The outline is drawn without
anti-aliasing so that the sprite's mask matches its pixels exactly; the plate
is not part of the sprite image (it is warped onto the frame separately, so
that it can be left out and given its own id), only its quad is.
"""

import dataclasses
import logging
import math

import cv2
import numpy as np

from platelab.synth import geometry
from platelab.synth.vehicles import DARK, HEADLIGHT_ON, TAILLIGHT_ON, Face

logger = logging.getLogger(__name__)

VIEWS = ("front", "rear", "side")

_POLYGON, _LINE, _TEXTURE = 0, 1, 2

LIGHT_DIRECTION = np.array([0.35, 0.85, -0.4]) / np.linalg.norm([0.35, 0.85, -0.4])
"""Key light direction in view coordinates (x right, y up, z away from the camera)."""


@dataclasses.dataclass
class Sprite:
    """A rendered view of a vehicle.

    Attributes:
        image: uint8 BGR image
        mask: bool array, True on the vehicle's pixels
        anchor: (x, y) sprite pixel of the reference point (the ground point in
            the middle of the face or side nearest the camera)
        scale: pixels per metre at the reference point
        plate_quad: (4, 2) sprite-pixel corners of the plate (top-left, top-right,
            bottom-right, bottom-left) or None when no plate faces the camera
        lights: list of (x, y, radius, BGR colour) of lit lamps, sprite pixels
    """

    image: np.ndarray
    mask: np.ndarray
    anchor: tuple
    scale: float
    plate_quad: np.ndarray | None
    lights: list


def render_sprite(
    model,
    view,
    elevation,
    azimuth,
    distance,
    scale,
    lighting,
    lights_on=False,
    facing=1,
    plate=None,
):
    """Draws a vehicle seen from a direction.

    Args:
        model: a VehicleModel
        view: ``front``, ``rear`` or ``side`` (the face turned to the camera)
        elevation: angle of the camera above the horizontal, radians
        azimuth: horizontal angle of the camera off the view's axis, radians
        distance: distance from the camera to the reference point, metres
            (sets the strength of the perspective)
        scale: pixels per metre at the reference point
        lighting: a scene.Lighting (its level, contrast and tint shade the faces)
        lights_on: whether head- and taillights are lit
        facing: for side views, +1 when the front points to the right of the image
            (the vehicle's right-hand side is seen), -1 for the other way
        plate: optional (position, corners): the plate's face (``"front"`` or
            ``"rear"``) and corners (see plate_corners), reported if visible

    Returns:
        a Sprite
    """
    distance = max(distance, 1.5 * max(model.length, model.width) if view == "side" else 3.0)
    transform = _ViewTransform(model, view, elevation, azimuth, distance, facing)
    flat = _flatten(model)
    projected = transform.project(flat["points"])
    normals = flat["normals"] @ transform.rotation.T
    centres = transform.to_view(flat["centres"])
    visible = np.einsum("ij,ij->i", normals, transform.camera[None] - centres) > 1e-9
    intensities = (
        0.55
        + 0.55 * np.maximum(normals @ LIGHT_DIRECTION, 0.0)
        + 0.1 * np.maximum(normals[:, 1], 0.0)
    )
    part_depth = transform.depth(flat["part_centres"])
    order = sorted(
        range(len(model.parts)), key=lambda index: (model.parts[index].layer, -part_depth[index])
    )
    entry_face = flat["entry_face"]
    entry_visible = visible[entry_face]
    factor = lighting.level * (1.0 + lighting.contrast * (intensities[entry_face] - 1.0))
    colours = flat["entry_colour"] * factor[:, None] * np.asarray(lighting.tint)[None]
    colours = np.clip(colours, 0, 255).astype(np.int64)
    entry_light = flat["entry_light"]
    if lights_on:
        colours[entry_light == 1] = HEADLIGHT_ON
        colours[entry_light == 2] = TAILLIGHT_ON
    colours = [tuple(colour) for colour in colours.tolist()]
    plate_points = None
    if plate is not None:
        position, corners = plate
        face_normal = (
            np.array([-1.0, 0.0, 0.0]) if position == "front" else np.array([1.0, 0.0, 0.0])
        )
        if transform.visible(Face(corners, face_normal, (0, 0, 0))):
            plate_points = transform.project(corners)
    starts, ends = flat["entry_start"], flat["entry_end"]
    drawn = projected[np.repeat(entry_visible, ends - starts)]
    drawn = np.concatenate([drawn, np.zeros((1, 2))])
    pad = 2
    minimum = drawn.min(axis=0)
    maximum = drawn.max(axis=0)
    width = int(math.ceil((maximum[0] - minimum[0]) * scale)) + 2 * pad
    height = int(math.ceil((maximum[1] - minimum[1]) * scale)) + 2 * pad

    def to_pixels(points):
        return (points - minimum) * scale + pad

    shift = geometry.SHIFT
    pixels_all = to_pixels(projected)
    fixed_all = np.round((pixels_all - 0.5) * (1 << shift)).astype(np.int32)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:] = DARK
    mask = np.zeros((height, width), dtype=np.uint8)
    outline = []
    lights = []
    kinds, payloads = flat["entry_kind"], flat["entry_payload"]
    for part_index in order:
        first, last = flat["part_entries"][part_index]
        for entry in range(first, last):
            if not entry_visible[entry]:
                continue
            kind = kinds[entry]
            if kind == _POLYGON:
                fixed = fixed_all[starts[entry] : ends[entry]]
                cv2.fillPoly(image, [fixed], colours[entry], cv2.LINE_8, shift)
                outline.append(fixed)
                if lights_on and entry_light[entry]:
                    lights.append((pixels_all[starts[entry] : ends[entry]], entry_light[entry]))
            elif kind == _LINE:
                pixels = pixels_all[starts[entry] : ends[entry]]
                thickness = max(1.0, payloads[entry].width * scale)
                for start, end in zip(pixels[:-1], pixels[1:], strict=True):
                    geometry.draw_line(image, start, end, colours[entry], thickness)
            else:
                decal = payloads[entry]
                pixels = pixels_all[starts[entry] : ends[entry]]
                intensity = float(intensities[entry_face[entry]])
                if decal.texture.shape[2] == 4:
                    _blend_texture(image, decal, pixels, lighting, intensity, mask)
                else:
                    texture = (
                        decal.texture
                        if decal.emissive
                        else lighting.shade_image(decal.texture, intensity)
                    )
                    geometry.warp_texture(
                        image, texture, pixels, mask=mask if decal.solid else None, mask_value=1
                    )
    # fillPoly with several polygons fills their even-odd union: draw them one by one.
    for fixed in outline:
        cv2.fillPoly(mask, [fixed], 1, cv2.LINE_8, shift)
    anchor = tuple(to_pixels(np.zeros((1, 2)))[0])
    plate_quad = to_pixels(plate_points) if plate_points is not None else None
    glows = []
    for pixels, kind in lights:
        centre = pixels.mean(axis=0)
        radius = max(float(np.ptp(pixels[:, 0])), float(np.ptp(pixels[:, 1])), 1.0)
        colour = (200, 230, 255) if kind == 1 else (30, 30, 255)
        glows.append((float(centre[0]), float(centre[1]), radius, colour))
    return Sprite(image, mask.astype(bool), anchor, float(scale), plate_quad, glows)


def _blend_texture(image, decal, pixels, lighting, intensity, mask):
    """Warps a BGRA texture decal onto its pixel quad, blended by its alpha over what
    lies beneath (lettering without a background of its own)."""
    texture = decal.texture
    shaded = np.dstack([lighting.shade_image(texture[..., :3], intensity), texture[..., 3]])
    warped = geometry.warp_quad(shaded, pixels, image.shape[:2])
    if warped is None:
        return
    (x0, y0, x1, y1), colour, covered = warped
    alpha = colour[..., 3:].astype(np.float32) / 255.0 * covered[..., None]
    region = image[y0:y1, x0:x1]
    blended = region.astype(np.float32) * (1.0 - alpha) + colour[..., :3] * alpha
    region[:] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    if decal.solid:
        mask[y0:y1, x0:x1][covered & (alpha[..., 0] > 0)] = 1


class _ViewTransform:
    """Vehicle coordinates to the metric image plane of a camera looking at the
    reference point (x right, y up; 1 unit = 1 metre at the reference point)."""

    def __init__(self, model, view, elevation, azimuth, distance, facing=1):
        self.elevation = elevation
        self.distance = distance
        if view == "front":
            rotation = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=np.float64)
            origin = np.array([0.0, 0.0, 0.0])
        elif view == "rear":
            rotation = np.array([[0, -1, 0], [0, 0, 1], [-1, 0, 0]], dtype=np.float64)
            origin = np.array([model.length, 0.0, 0.0])
        elif facing > 0:
            # Seen from its right-hand side (b < 0), the front points to the image right.
            rotation = np.array([[-1, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=np.float64)
            origin = np.array([model.length / 2.0, -model.width / 2.0, 0.0])
        else:
            rotation = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64)
            origin = np.array([model.length / 2.0, model.width / 2.0, 0.0])
        cos_azimuth, sin_azimuth = math.cos(azimuth), math.sin(azimuth)
        yaw = np.array([[cos_azimuth, 0, sin_azimuth], [0, 1, 0], [-sin_azimuth, 0, cos_azimuth]])
        self.rotation = yaw @ rotation
        self.origin = origin
        self.camera = np.array(
            [0.0, distance * math.sin(elevation), -distance * math.cos(elevation)]
        )

    def to_view(self, points):
        return (np.asarray(points, dtype=np.float64) - self.origin) @ self.rotation.T

    def depth(self, points):
        view = self.to_view(points)
        return (
            self.distance
            + view[:, 2] * math.cos(self.elevation)
            - view[:, 1] * math.sin(self.elevation)
        )

    def project(self, points):
        view = self.to_view(points)
        depth = (
            self.distance
            + view[:, 2] * math.cos(self.elevation)
            - view[:, 1] * math.sin(self.elevation)
        )
        depth = np.maximum(depth, 0.1)
        up = view[:, 1] * math.cos(self.elevation) + view[:, 2] * math.sin(self.elevation)
        factor = self.distance / depth
        return np.column_stack([view[:, 0] * factor, -up * factor])

    def visible(self, face):
        normal = self.rotation @ face.normal
        centre = self.to_view(face.points).mean(axis=0)
        return float(normal @ (self.camera - centre)) > 1e-9


def _flatten(model):
    """All faces and decals of a model in arrays, computed once per model.

    Returns:
        dict: ``points`` (all polygon points), ``normals`` and ``centres`` per
        face, ``part_centres``, ``part_entries`` (first, last entry of each
        part) and per entry (faces and decals, part by part): ``entry_face``,
        ``entry_kind``, ``entry_start``/``entry_end`` (their points),
        ``entry_colour``, ``entry_light`` (0 none, 1 head, 2 tail) and
        ``entry_payload`` (the Face or Decal)
    """
    if model.flat is not None:
        return model.flat
    points, normals, centres = [], [], []
    faces, kinds, starts, ends, colours, lights, payloads, part_entries = ([] for _ in range(8))
    count = 0

    def add(face_number, kind, polygon, colour, light, payload):
        nonlocal count
        faces.append(face_number)
        kinds.append(kind)
        starts.append(count)
        count += len(polygon)
        ends.append(count)
        points.append(polygon)
        colours.append(colour)
        lights.append({"head": 1, "tail": 2}.get(light, 0))
        payloads.append(payload)

    for part in model.parts:
        first = len(faces)
        for face in part.faces.values():
            face_number = len(normals)
            normals.append(face.normal)
            centres.append(face.points.mean(axis=0))
            add(face_number, _POLYGON, face.points, face.colour, None, face)
            for decal in face.decals:
                kind = {"polygon": _POLYGON, "line": _LINE}.get(decal.kind, _TEXTURE)
                add(face_number, kind, decal.points, decal.colour, decal.light, decal)
        part_entries.append((first, len(faces)))
    model.flat = {
        "points": np.concatenate(points),
        "normals": np.array(normals),
        "centres": np.array(centres),
        "part_centres": np.array([part.centre for part in model.parts]),
        "part_entries": part_entries,
        "entry_face": np.array(faces),
        "entry_kind": kinds,
        "entry_start": np.array(starts),
        "entry_end": np.array(ends),
        "entry_colour": np.array(colours, dtype=np.float64),
        "entry_light": np.array(lights),
        "entry_payload": payloads,
    }
    return model.flat
