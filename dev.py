#!/usr/bin/env python3
"""The two commands of the README, for a machine with only Python >= 3.11 and pip.

python3 dev.py lab    install into .venv, start the local Supabase stand-in, open JupyterLab on notebooks/
python3 dev.py test   install into .venv, run the whole test suite (extra arguments go to pytest)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".workbench-installed"


def ensure_installed() -> None:
    """Create .venv and install the package with its dev extras when pyproject.toml changed."""
    if sys.version_info < (3, 11):
        sys.exit(f"Python >= 3.11 is needed; this is {sys.version.split()[0]}.")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest and (BIN / "workbench").exists():
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing the workbench and its dependencies into .venv ...", flush=True)
    subprocess.run(
        [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", ".[dev]"],
        cwd=ROOT,
        check=True,
    )
    STAMP.write_text(digest)


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("WORKBENCH_LOCAL_DIR", str(ROOT / ".workbench" / "local"))
    env.setdefault("XDG_RUNTIME_DIR", "/tmp")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def lab(args: list[str]) -> int:
    env = environment()
    subprocess.run([str(BIN / "workbench"), "local", "start"], env=env, check=True)
    subprocess.run([str(BIN / "workbench"), "doctor"], env=env, check=False)
    cmd = [str(BIN / "jupyter"), "lab", f"--notebook-dir={ROOT / 'notebooks'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    os.execve(cmd[0], cmd + args, env)
    return 0


def test(args: list[str]) -> int:
    env = environment()
    env.pop("WORKBENCH_LOCAL_DIR")  # the suite starts its own throwaway stand-ins
    return subprocess.run([str(BIN / "python"), "-m", "pytest", *args], cwd=ROOT, env=env).returncode


def main() -> int:
    commands = {"lab": lab, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    ensure_installed()
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
