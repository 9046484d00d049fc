"""Profiles, parameter files and the notebooks (stages) they drive.

A profile is a YAML file in ``params/`` (``params/default.yaml``). Its
``common`` section goes to every stage that declares the parameter; a section
named after a stage (``00_synthesize``, or just ``"00"``) goes to that stage
alone. Every key must be a parameter the stage's notebook declares in its
``parameters`` cell, with a compatible type, so that a typo fails before
anything runs::

    description: the whole chain on the embedded synthetic data
    common:
      workspace: default
      seed: 1234
    00_synthesize:
      videos: 6
"""

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from platelab import paths
from platelab.exceptions import PlatelabError

logger = logging.getLogger(__name__)

STAGE_PATTERN = re.compile(r"^(\d{2})_([A-Za-z0-9_]+)\.ipynb$")
RESERVED_KEYS = ("description", "common")
RUNNER_PARAMETERS = ("report_dir",)
"""Parameters the runner sets itself; a profile may not set them."""


class ConfigError(PlatelabError, ValueError):
    """A problem with a profile, parameter file or stage selection (one-line message)."""


@dataclass(frozen=True)
class Stage:
    """One notebook of the chain.

    Attributes:
        number: the two-digit prefix, e.g. ``"00"``
        name: the notebook's stem, e.g. ``"00_synthesize"``
        path: the notebook's path
    """

    number: str
    name: str
    path: Path


@dataclass
class Params:
    """A loaded parameter file.

    Attributes:
        name: the profile's name (the file's stem)
        path: the file it came from
        description: its one-line description
        common: parameters for every stage that declares them
        stages: per-stage parameters, keyed by stage name
        raw_text: the file's text, as read (fingerprinted into the run metadata)
    """

    name: str
    path: Path
    description: str = ""
    common: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)
    raw_text: str = ""


def discover_stages(notebooks_dir=None):
    """Lists the stage notebooks (``NN_name.ipynb``) in chain order.

    Args:
        notebooks_dir: the folder to look in (default ``notebooks/``)

    Returns:
        a list of :class:`Stage`, sorted by number

    Raises:
        ConfigError: if the folder is missing or two notebooks share a number
    """
    notebooks_dir = Path(notebooks_dir or paths.NOTEBOOKS_DIR)
    if not notebooks_dir.is_dir():
        raise ConfigError(f"{notebooks_dir}: notebooks folder not found")
    stages = {}
    for path in sorted(notebooks_dir.iterdir()):
        match = STAGE_PATTERN.match(path.name)
        if not match:
            continue
        number = match.group(1)
        if number in stages:
            raise ConfigError(
                f"{path}: stage number {number} is also used by {stages[number].path.name}"
            )
        stages[number] = Stage(number=number, name=path.stem, path=path)
    return [stages[number] for number in sorted(stages)]


def select_stages(stages, selection=None):
    """Picks stages by number or name, keeping chain order.

    Args:
        stages: the list from :func:`discover_stages`
        selection: None (all), or a comma-separated str or list of numbers
            (``"00,01"``), names (``"00_synthesize"``) or ranges (``"00-03"``)

    Returns:
        the selected stages, in chain order

    Raises:
        ConfigError: naming an unknown stage
    """
    if selection is None or selection == "" or selection == []:
        return list(stages)
    if isinstance(selection, str):
        selection = [item.strip() for item in selection.split(",") if item.strip()]
    known = {stage.number: stage for stage in stages}
    by_name = {stage.name: stage for stage in stages}
    chosen = set()
    for item in selection:
        range_match = re.fullmatch(r"(\d{1,2})-(\d{1,2})", item)
        if range_match:
            low, high = (int(value) for value in range_match.groups())
            numbers = [number for number in known if low <= int(number) <= high]
            if not numbers:
                raise ConfigError(f"stage range '{item}' matches no stage ({_known(stages)})")
            chosen.update(numbers)
        elif item in by_name:
            chosen.add(by_name[item].number)
        elif item.isdigit() and f"{int(item):02d}" in known:
            chosen.add(f"{int(item):02d}")
        else:
            raise ConfigError(f"unknown stage '{item}' ({_known(stages)})")
    return [stage for stage in stages if stage.number in chosen]


def profile_path(profile):
    """Returns the YAML file of a named profile (``params/<profile>.yaml``).

    Raises:
        ConfigError: if there is no such profile
    """
    path = paths.PARAMS_DIR / f"{profile}.yaml"
    if not path.is_file():
        available = sorted(item.stem for item in paths.PARAMS_DIR.glob("*.yaml"))
        raise ConfigError(
            f"unknown profile '{profile}': no {path.relative_to(paths.PROJECT_ROOT)} "
            f"(available: {', '.join(available) or 'none'})"
        )
    return path


def load_params(path):
    """Reads and structurally checks a parameter file.

    Args:
        path: the YAML file

    Returns:
        a :class:`Params`

    Raises:
        ConfigError: if the file is missing, unreadable or malformed
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: parameter file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read parameter file ({_reason(error)})") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {_type(document)}")
    params = Params(name=path.stem, path=path, raw_text=text)
    params.description = str(document.get("description", "") or "")
    common = document.get("common", {}) or {}
    if not isinstance(common, dict):
        raise ConfigError(f"{path}: 'common' must be a mapping, got {_type(common)}")
    params.common = dict(common)
    for key, value in document.items():
        if key in RESERVED_KEYS:
            continue
        value = value or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: section '{key}' must be a mapping, got {_type(value)}")
        params.stages[str(key)] = dict(value)
    return params


def resolve_params(params, stages):
    """Checks a parameter file against the stages' notebooks.

    Args:
        params: a :class:`Params`
        stages: every stage of the chain (sections may name any of them)

    Returns:
        a dict mapping stage name to the parameters to inject

    Raises:
        ConfigError: naming the file, the section and the offending key
    """
    by_key = {}
    for stage in stages:
        by_key[stage.name] = stage
        by_key[stage.number] = stage
    declared = {stage.name: declared_parameters(stage.path) for stage in stages}
    resolved = {stage.name: {} for stage in stages}
    for key, value in params.common.items():
        if key in RUNNER_PARAMETERS:
            raise ConfigError(f"{params.path}: 'common.{key}' is set by the runner")
        users = [stage for stage in stages if key in declared[stage.name]]
        if not users:
            raise ConfigError(f"{params.path}: 'common.{key}' is not a parameter of any stage")
        for stage in users:
            _check_type(params.path, f"common.{key}", value, declared[stage.name][key])
            resolved[stage.name][key] = value
    for section, values in params.stages.items():
        stage = by_key.get(section) or by_key.get(section.zfill(2))
        if stage is None:
            raise ConfigError(
                f"{params.path}: section '{section}' names no stage ({_known(stages)})"
            )
        for key, value in values.items():
            if key in RUNNER_PARAMETERS:
                raise ConfigError(f"{params.path}: '{section}.{key}' is set by the runner")
            if key not in declared[stage.name]:
                known = ", ".join(sorted(declared[stage.name])) or "none"
                raise ConfigError(
                    f"{params.path}: '{section}.{key}' is not a parameter of {stage.name} "
                    f"(known: {known})"
                )
            _check_type(params.path, f"{section}.{key}", value, declared[stage.name][key])
            resolved[stage.name][key] = value
    return resolved


def declared_parameters(notebook_path):
    """Reads the ``parameters`` cell of a notebook.

    Args:
        notebook_path: the notebook

    Returns:
        a dict mapping parameter name to a dict with ``type`` (papermill's
        inferred type name), ``default`` (source text) and ``help``
    """
    from papermill.inspection import inspect_notebook

    try:
        found = inspect_notebook(str(notebook_path))
    except Exception as error:  # noqa: BLE001 - papermill raises many kinds
        raise ConfigError(f"{notebook_path}: cannot read notebook ({_reason(error)})") from None
    return {
        name: {
            "type": info.get("inferred_type_name", "None"),
            "default": info.get("default"),
            "help": info.get("help", ""),
        }
        for name, info in found.items()
    }


def _check_type(path, where, value, declared):
    expected = (declared.get("type") or "None").strip()
    checks = {
        "int": lambda item: isinstance(item, int) and not isinstance(item, bool),
        "float": lambda item: isinstance(item, (int, float)) and not isinstance(item, bool),
        "str": lambda item: isinstance(item, str),
        "bool": lambda item: isinstance(item, bool),
        "list": lambda item: isinstance(item, list),
        "dict": lambda item: isinstance(item, dict),
    }
    base = expected.split("[")[0].lower()
    check = checks.get(base)
    if check is not None and not check(value):
        raise ConfigError(f"{path}: '{where}' should be {expected}, got {_type(value)} {value!r}")


def _known(stages):
    return "known: " + (", ".join(stage.name for stage in stages) or "none")


def _type(value):
    return type(value).__name__


def _reason(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def check_fields(cls, values, error, what):
    """Refuses keys that a config dataclass does not declare, naming them.

    Args:
        cls: the dataclass
        values: the dict about to become one
        error: the exception class raised (the concern's own, a :class:`PlatelabError`)
        what: the parameters' kind in the message (``"training"``, ``"pretraining"``)

    Raises:
        error: ``unknown <what> parameter(s): a, b``
    """
    known = {item.name for item in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise error(f"unknown {what} parameter(s): {', '.join(unknown)}")
