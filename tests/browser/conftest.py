"""Browser rigs: one real JupyterLab server and one headless Debian chromium (Playwright) per session.

``lab`` serves a temporary root folder; tests write notebooks into ``lab.root_dir`` (see ``lab.write_notebook``)
and the kernels talk to the session's local stand-in through ``WORKBENCH_LOCAL_DIR``. ``page`` is a fresh
browser tab per test in one shared browser context (so JupyterLab's assets stay cached between tests); a failed
test leaves ``test-artifacts/screenshots/FAILED-<test>.png`` and the session writes the rig's timings to
``test-artifacts/browser-timings.json``. Helpers to drive notebooks are in ``lab.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from typing import Any

import pytest
from lab import SCREENSHOTS, TIMINGS, Lab, screenshot, start_lab
from rigs import require_tool

from workbench.local.postgres import free_port
from workbench.local.standin import LocalStandIn

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1280, "height": 900}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder drives a browser: mark it so that ``-m 'not browser'`` leaves it out."""
    for item in items:
        if "tests/browser/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return require_tool("chromium", "needed to drive JupyterLab in a real browser")


@pytest.fixture(scope="session")
def lab(chromium_path: str, standin: LocalStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A real ``jupyter lab`` from this venv, token auth, private Jupyter folders, kernels on the stand-in."""
    home = tmp_path_factory.mktemp("lab-home")
    server = start_lab(home=home, root_dir=home / "root", local_dir=standin.data_dir, port=free_port())
    yield server
    server.stop()
    # The rig's own cost (server start, first and later notebook opens), kept next to the screenshots.
    SCREENSHOTS.parent.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS.parent / "browser-timings.json").write_text(json.dumps(TIMINGS, indent=2))


@pytest.fixture(scope="session")
def browser_context(chromium_path: str) -> Iterator[Any]:
    """One headless chromium and one context for the session (never ``playwright install``: Debian's binary)."""
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        TIMINGS["browser_launch_s"] = time.monotonic() - started
        context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)  # type: ignore[arg-type]
        yield context
        context.close()
        browser.close()


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember whether the test body failed, so that ``page`` can keep a screenshot of the failure."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture()
def page(browser_context: Any, lab: Lab, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A new tab for one test; afterwards the tab is closed and every kernel shut down.

    When the test failed, the tab is first saved as ``test-artifacts/screenshots/FAILED-<test>.png``.
    """
    failed_name = "FAILED-" + "".join(c if c.isalnum() else "_" for c in request.node.name)
    (SCREENSHOTS / f"{failed_name}.png").unlink(missing_ok=True)
    tab = browser_context.new_page()
    tab.set_default_timeout(60_000)
    console: list[str] = []
    tab.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    tab.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    yield tab
    if request.node.stash.get(_CALL_FAILED, False):
        screenshot(tab, failed_name)
        print("the browser console's errors and warnings:\n" + "\n".join(console or ["(none)"]))
    tab.close()
    lab.shutdown_kernels()
