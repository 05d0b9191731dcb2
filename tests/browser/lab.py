"""A real JupyterLab server for browser tests, and helpers that drive it through Playwright's page.

Everything waits on conditions (HTTP status, DOM state), never on fixed sleeps: the first JupyterLab
load on a 2-core machine can take many seconds, and a later one a fraction of that.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rigs import ROOT

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"

# Playwright timeouts in milliseconds. The first JupyterLab load (about 10 MB of JavaScript) is the slow one.
FIRST_LOAD_MS = 120_000
KERNEL_MS = 90_000
RUN_MS = 120_000
OUTPUT_MS = 60_000

CHROME_PX = 160  # JupyterLab's menu bar, toolbar and status bar around the notebook area
MAX_SHOT_PX = 4000
IDLE = ".jp-Notebook-ExecutionIndicator[data-status='idle']"
OUTPUT = ".jp-OutputArea-output"
ERROR_OUTPUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"

# User settings written into the server's private JUPYTER_CONFIG_DIR: no news or update toasts (they need the
# internet and cover the page), every cell attached to the DOM so that screenshots and locators see them, and
# the notebook's kernel started without the "Select Kernel" dialog.
USER_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
}


# The rig's own cost in seconds (server start, browser launch, notebook opens, Run All), for the session.
TIMINGS: dict[str, float] = {}


class LabError(RuntimeError):
    """The JupyterLab server or a notebook in it did not do what a test needed; the message says what."""


@dataclass
class Lab:
    """One running ``jupyter lab`` process with token auth and every Jupyter folder inside ``home``."""

    url: str
    token: str = field(repr=False)
    root_dir: Path
    home: Path
    local_dir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path
    timings: dict[str, float] = field(default_factory=lambda: TIMINGS)

    def page_url(self, path: str, **query: str) -> str:
        """A browser URL under ``/lab/`` carrying the token (``reset`` clears the saved workspace)."""
        params = "&".join([f"token={self.token}", *(k if v == "" else f"{k}={v}" for k, v in query.items())])
        return f"{self.url}/lab/{path.lstrip('/')}?{params}"

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the server's REST API (``/api/...``) with the token."""
        headers = {"Authorization": f"token {self.token}"}
        return httpx.request(method, f"{self.url}/api/{path.lstrip('/')}", headers=headers, timeout=30, **kwargs)

    def shutdown_kernels(self) -> int:
        """Shut down every session and kernel so that the next test starts on a quiet machine."""
        count = 0
        for session in self.api("GET", "sessions").json():
            self.api("DELETE", f"sessions/{session['id']}")
            count += 1
        for kernel in self.api("GET", "kernels").json():
            self.api("DELETE", f"kernels/{kernel['id']}")
            count += 1
        return count

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:].replace(self.token, "<token>")

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def lab_environment(home: Path, local_dir: Path) -> dict[str, str]:
    """The server's (and so its kernels') environment: private Jupyter folders, this checkout, the stand-in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "JUPYTER", "IPYTHON"))}
    env |= {
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(home / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(home / "jupyter-runtime"),
        "IPYTHONDIR": str(home / "ipython"),
        "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp"),
        "WORKBENCH_LOCAL_DIR": str(local_dir),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "PYTHONUNBUFFERED": "1",
    }
    return env


def write_user_settings(config_dir: Path) -> None:
    for name, values in USER_SETTINGS.items():
        path = config_dir / "lab" / "user-settings" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


def start_lab(home: Path, root_dir: Path, local_dir: Path, port: int, timeout: float = 90) -> Lab:
    """Start ``python -m jupyter lab`` from this interpreter and poll ``/api/status`` until it answers."""
    for sub in ("jupyter-config", "jupyter-data", "jupyter-runtime", "ipython"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    root_dir.mkdir(parents=True, exist_ok=True)
    write_user_settings(home / "jupyter-config")
    token = secrets.token_hex(24)
    log_path = home / "jupyter-lab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root_dir}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    env = lab_environment(home, local_dir) | {"JUPYTER_TOKEN": token}
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            cmd, cwd=root_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    lab = Lab(
        url=f"http://127.0.0.1:{port}",
        token=token,
        root_dir=root_dir,
        home=home,
        local_dir=local_dir,
        process=process,
        log_path=log_path,
    )
    deadline = started + timeout
    while True:
        if process.poll() is not None:
            raise LabError(f"jupyter lab exited with code {process.returncode}:\n{lab.log_tail()}")
        try:
            if lab.api("GET", "status").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            lab.stop()
            raise LabError(f"jupyter lab did not answer /api/status within {timeout}s:\n{lab.log_tail()}")
        time.sleep(0.1)  # polling the status endpoint, not a fixed wait
    lab.timings["server_start_s"] = time.monotonic() - started
    return lab


# -- notebooks ------------------------------------------------------------------------------------------------
def write_notebook(directory: Path, name: str, cells: list[str]) -> Path:
    """Write ``cells`` (code; a cell starting with ``<!--md-->`` is markdown) as ``directory/name`` (python3)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    nb = new_notebook(
        cells=[
            new_markdown_cell(c.removeprefix("<!--md-->").lstrip()) if c.startswith("<!--md-->") else new_code_cell(c)
            for c in cells
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    if not name.endswith(".ipynb"):
        name += ".ipynb"
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def open_notebook(page: Any, lab: Lab, name: str, *, sidebar: bool = False) -> None:
    """Open ``name`` (relative to the server's root) in a fresh workspace and wait for an idle kernel.

    The left sidebar (file browser) is collapsed unless ``sidebar``, so that screenshots show the notebook.
    """
    started = time.monotonic()
    widgets_loaded = watch_widget_manager(page)
    page.goto(lab.page_url(f"tree/{name}", reset=""), wait_until="domcontentloaded")
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.wait_for(timeout=FIRST_LOAD_MS)
    lab.timings.setdefault("first_app_load_s", time.monotonic() - started)
    lab.timings["last_app_load_s"] = time.monotonic() - started
    if not sidebar:
        open_tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
        if open_tab.count():
            open_tab.first.click()
            page.locator("#jp-left-stack").wait_for(state="hidden")
    wait_for_kernel(lab, name, timeout=KERNEL_MS / 1000)
    page.locator(IDLE).first.wait_for(state="attached", timeout=KERNEL_MS)
    wait_for_widget_manager(page, widgets_loaded, name)
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        raise LabError(f"JupyterLab shows a dialog over {name}: {dialog.first.inner_text()!r}")
    lab.timings.setdefault("first_open_s", time.monotonic() - started)
    lab.timings["last_open_s"] = time.monotonic() - started


# The widget manager's first look at a new kernel ends with one of these answers: the states of the widgets the
# kernel has (ipywidgets imported), or, when the kernel has no control comm yet, the list of its widget comms.
_WIDGET_LOAD_ANSWERS = (b"update_states", b"comm_info_reply")


def watch_widget_manager(page: Any) -> threading.Event:
    """An Event set when the notebook's widget manager has loaded the widgets its kernel already has.

    The manager asks the kernel for them once it is connected (ipywidgets' ``_loadFromKernel``). If cells run
    first, that question queues behind them and its answer races the widgets they create (read in ipywidgets'
    code; waiting did not remove the rare lost widget model that ``test_policy_impact`` still meets).
    """
    loaded = threading.Event()

    def on_frame(payload: str | bytes) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        if any(answer in data for answer in _WIDGET_LOAD_ANSWERS):
            loaded.set()

    page.on("websocket", lambda ws: ws.on("framereceived", on_frame))
    return loaded


def wait_for_widget_manager(page: Any, loaded: threading.Event, name: str, timeout_ms: int = KERNEL_MS) -> None:
    """Wait until ``loaded`` (from :func:`watch_widget_manager`) is set; Playwright delivers the websocket
    frames while the page is waited on, so the condition is polled through the page."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not loaded.is_set():
        if time.monotonic() > deadline:
            raise LabError(f"the widget manager of {name} did not load its kernel's widgets within {timeout_ms} ms")
        page.wait_for_timeout(50)


def wait_for_kernel(lab: Lab, name: str, timeout: float) -> None:
    """Poll the REST API until the notebook ``name`` has a session whose kernel is idle."""
    deadline = time.monotonic() + timeout
    while True:
        sessions = lab.api("GET", "sessions").json()
        states = [s["kernel"]["execution_state"] for s in sessions if s.get("path") == name and s.get("kernel")]
        if "idle" in states:
            return
        if time.monotonic() > deadline:
            raise LabError(f"no idle kernel for {name} after {timeout}s (sessions: {states}):\n{lab.log_tail()}")
        time.sleep(0.1)  # polling the sessions endpoint, not a fixed wait


_ALL_EXECUTED = """() => {
  const prompts = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')];
  return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent || ''));
}"""


def run_all(page: Any, *, allow_errors: bool = False, timeout_ms: int = RUN_MS) -> None:
    """Run -> Run All Cells from the menu bar, then wait until every code cell has an execution count.

    Raises ``LabError`` with the kernel's error output when a cell failed (unless ``allow_errors``).
    """
    started = time.monotonic()
    start_run_all(page)
    wait_until_executed(page, allow_errors=allow_errors, timeout_ms=timeout_ms)
    TIMINGS.setdefault("first_run_all_s", time.monotonic() - started)
    TIMINGS["last_run_all_s"] = time.monotonic() - started


def start_run_all(page: Any) -> None:
    """Click Run -> Run All Cells and return at once (to watch a widget while cells are still running)."""
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item:visible", has_text="Run All Cells").first.click()


def wait_until_executed(page: Any, *, allow_errors: bool = False, timeout_ms: int = RUN_MS) -> None:
    """Wait until every code cell of the open notebook has an execution count and the kernel is idle."""
    try:
        page.wait_for_function(_ALL_EXECUTED, timeout=timeout_ms)
    except Exception as exc:
        raise LabError(f"not every cell finished within {timeout_ms} ms: {errors_text(page) or exc}") from exc
    page.locator(IDLE).first.wait_for(state="attached", timeout=timeout_ms)
    if not allow_errors and (text := errors_text(page)):
        raise LabError(f"a cell failed in the notebook:\n{text}")


NOTEBOOK_CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"


def cell_at(page: Any, index: int) -> Any:
    """The ``index``-th cell (markdown cells count) of the open notebook."""
    return page.locator(NOTEBOOK_CELLS).nth(index)


_RERUN_DONE = """([cell, before]) => {
  const prompt = cell.querySelector('.jp-InputPrompt');
  const text = (prompt && prompt.textContent) || '';
  return /\\[\\d+\\]/.test(text) && text !== before;
}"""


def run_cell(page: Any, cell: Any, *, timeout_ms: int = RUN_MS) -> None:
    """Run one cell again (select it, Ctrl+Enter) and wait until its execution count changes."""
    before = cell.locator(".jp-InputPrompt").inner_text()
    cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Control+Enter")
    page.wait_for_function(_RERUN_DONE, arg=[cell.element_handle(), before], timeout=timeout_ms)


def errors_text(page: Any) -> str:
    """The text of every error/stderr output on the page (a traceback, a warning)."""
    return "\n".join(page.locator(ERROR_OUTPUT).all_inner_texts()).strip()


_SELECTOR_PREFIXES = (".", "#", "[", "css=", "text=", "xpath=", "internal:")


def wait_for_output(page: Any, selector_or_text: str, timeout_ms: int = OUTPUT_MS) -> Any:
    """Wait until an output shows ``selector_or_text`` and return its Locator.

    A CSS/Playwright selector (starting with ``.``, ``#``, ``[``, ``css=``, ``text=``, ``xpath=``) is matched
    inside the output areas; anything else is text that an output area must contain.
    """
    if selector_or_text.startswith(_SELECTOR_PREFIXES):
        locator = page.locator(OUTPUT).locator(selector_or_text).first
    else:
        locator = page.locator(OUTPUT, has_text=selector_or_text).first
    try:
        locator.wait_for(state="visible", timeout=timeout_ms)
    except Exception as exc:
        errors = errors_text(page)
        raise LabError(
            f"no output showed {selector_or_text!r} within {timeout_ms} ms"
            + (f"; errors:\n{errors}" if errors else "")
            + f"; the outputs were:\n{outputs_text(page)}"
        ) from exc
    return locator


def outputs_text(page: Any, chars: int = 300) -> str:
    """Each output of the open notebook as ``[mime type] text`` (shortened): what a failed wait saw instead."""
    outputs = page.locator(f".jp-NotebookPanel:not(.lm-mod-hidden) {OUTPUT}")
    lines = []
    for i in range(outputs.count()):
        output = outputs.nth(i)
        mime = output.get_attribute("data-mime-type") or "?"
        text = " ".join(output.inner_text().split())
        lines.append(f"  [{mime}] {text[:chars]}")
    return "\n".join(lines) or "  (none)"


def cell_of(locator: Any) -> Any:
    """The notebook cell (input and outputs) that holds ``locator``: a good frame for a widget screenshot."""
    return locator.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' jp-Cell ')][1]")


def output_of(locator: Any) -> Any:
    """The output area of the cell that holds ``locator``: the widget alone, without the code."""
    return cell_of(locator).locator(".jp-Cell-outputWrapper").first


def screenshot(page: Any, name: str, element: Any | None = None, *, show: Any | None = None) -> Path:
    """Save ``test-artifacts/screenshots/<name>.png`` and return its path.

    ``element``: shoot only that Locator, whole: when it is taller than the notebook area, the window grows for
    the shot (JupyterLab scrolls inside its own panels, so a page-level full-page shot would cut it).
    Otherwise the whole page, first scrolled so that the Locator ``show`` is visible.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if show is not None:
        show.scroll_into_view_if_needed()
    if element is None:
        page.screenshot(path=str(path), animations="disabled")
        return path
    viewport = page.viewport_size
    needed = int(element.evaluate("el => el.getBoundingClientRect().height")) + CHROME_PX
    grow = viewport is not None and needed > viewport["height"]
    if grow:
        height = min(needed, MAX_SHOT_PX)
        page.set_viewport_size({"width": viewport["width"], "height": height})
        page.wait_for_function(f"() => window.innerHeight === {height}")
    try:
        element.scroll_into_view_if_needed()
        element.screenshot(path=str(path), animations="disabled")
    finally:
        if grow:
            page.set_viewport_size(viewport)
    return path
