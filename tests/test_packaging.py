"""environment.yml (conda-forge) and pyproject.toml must install the same dependencies."""

from __future__ import annotations

import re
import tomllib

import yaml
from rigs import ROOT

# conda has no extras: pyjwt[crypto] and sqlalchemy[asyncio] are spelled out as these packages
EXTRAS_SPELLED_OUT = {"cryptography", "greenlet"}
CONDA_ONLY = {"python", "pip"}


def _name(spec: str) -> str:
    return re.split(r"[\[<>=!~ ;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_names() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    specs = list(data["project"]["dependencies"])
    for group in data["project"]["optional-dependencies"].values():
        specs += group
    return {_name(s) for s in specs}


def environment_names() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names: set[str] = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(p) for p in dep["pip"] if not p.startswith("-")}
        else:
            names.add(_name(dep))
    return names


def test_environment_yml_matches_pyproject() -> None:
    py, conda = pyproject_names(), environment_names()
    assert py - conda == set(), f"in pyproject.toml but not environment.yml: {sorted(py - conda)}"
    extra = conda - py - EXTRAS_SPELLED_OUT - CONDA_ONLY
    assert extra == set(), f"in environment.yml but not pyproject.toml: {sorted(extra)}"
