"""Execute a notebook from ``notebooks/`` top to bottom with nbclient, against a given local stand-in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rigs import ROOT

NOTEBOOKS = ROOT / "notebooks"


def run_notebook(
    name: str,
    local_dir: Path | str,
    *,
    extra_env: dict[str, str] | None = None,
    timeout: int = 300,
) -> Any:
    """Run ``notebooks/<name>`` in a fresh python3 kernel whose ``WORKBENCH_LOCAL_DIR`` is ``local_dir``.

    Raises nbclient's ``CellExecutionError`` (with the failing cell's traceback) when a cell fails;
    returns the executed notebook so tests can assert on outputs.
    """
    import nbformat
    from nbclient import NotebookClient

    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    env = {"WORKBENCH_LOCAL_DIR": str(local_dir), "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")}
    env |= extra_env or {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
        )
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def outputs_text(nb: Any) -> str:
    """Every text output of an executed notebook (stream, text/plain, text/html, errors), joined."""
    parts: list[str] = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(str(out["text"]))
            for key in ("text/plain", "text/html", "text/markdown", "application/json"):
                if key in out.get("data", {}):
                    parts.append(str(out["data"][key]))
            if out.get("output_type") == "error":
                parts.append("\n".join(out.get("traceback", [])))
    return "\n".join(parts)
