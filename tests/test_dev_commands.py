"""The README's start command: the stand-in comes up, doctor reports every part healthy, JupyterLab serves."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

import httpx
from rigs import ROOT

from workbench.local.postgres import free_port
from workbench.local.standin import LocalStandIn


def test_lab_command_starts_the_standin_and_jupyterlab(tmp_path) -> None:  # type: ignore[no-untyped-def]
    local = tmp_path / "local"
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "WORKBENCH_LOCAL_DIR": str(local),
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(home / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(home / "jupyter-runtime"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    port, token = free_port(), secrets.token_hex(8)
    log = tmp_path / "lab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "dev.py"),
                "lab",
                "--no-browser",
                f"--port={port}",
                f"--ServerApp.token={token}",
                "--ServerApp.ip=127.0.0.1",
                "--LabApp.news_url=None",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/api/status", params={"token": token}, timeout=2)
                if resp.status_code == 200:
                    status = resp.json()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling until JupyterLab answers
        text = log.read_text()
        assert status is not None, text[-3000:]
        lab = httpx.get(f"http://127.0.0.1:{port}/lab", params={"token": token}, timeout=10)
        assert lab.status_code == 200 and "JupyterLab" in lab.text
        tree = httpx.get(f"http://127.0.0.1:{port}/api/contents", params={"token": token}, timeout=10).json()
        assert "00_quickstart.ipynb" in {item["name"] for item in tree["content"]}
        standin = LocalStandIn(local)
        state = standin.status()
        assert state.db_running and state.api_running
        doctor_lines = [ln for ln in text.splitlines() if ln.startswith(("[ok  ]", "[FAIL]"))]
        assert len(doctor_lines) >= 7 and all(ln.startswith("[ok  ]") for ln in doctor_lines), doctor_lines
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        LocalStandIn(local).destroy()
