"""environment.yml mirrors pyproject.toml; constraints pin every dependency."""

import re

import tomllib
import yaml

from conftest import PROJECT_ROOT


def _normalise(requirement):
    return re.sub(r"\s+", "", requirement).lower().replace("_", "-")


def _pyproject_requirements():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    return {
        _normalise(item)
        for item in project["dependencies"] + project["optional-dependencies"]["dev"]
    }


def test_environment_yml_mirrors_pyproject():
    environment = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    pip_lists = [item["pip"] for item in environment["dependencies"] if isinstance(item, dict)]
    assert len(pip_lists) == 1
    conda_pip = {_normalise(item) for item in pip_lists[0] if not item.startswith("-e")}
    pyproject = _pyproject_requirements()
    assert conda_pip - pyproject == set(), "in environment.yml but not pyproject.toml"
    assert pyproject - conda_pip == set(), "in pyproject.toml but not environment.yml"


def test_constraints_pin_every_direct_dependency():
    pinned = {}
    for line in (PROJECT_ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pinned[name.lower().replace("_", "-")] = version
    for requirement in _pyproject_requirements():
        name = re.split(r"[<>=!~\[]", requirement)[0]
        assert name in pinned, f"{name} is not pinned in constraints.txt"
        exact = re.search(r"==(.+)$", requirement)
        if exact:
            assert pinned[name] == exact.group(1), f"{name}: pyproject and constraints disagree"
