"""The live pool-status widget in a real JupyterLab: it keeps updating in the page while a load runs in the kernel.

The load is read-only (each query's transaction is rolled back), so the session's stand-in is left unchanged.
"""

from __future__ import annotations

import pytest
from lab import (
    Lab,
    cell_at,
    open_notebook,
    output_of,
    screenshot,
    start_run_all,
    wait_for_output,
    wait_until_executed,
    write_notebook,
)

pytestmark = pytest.mark.browser

LOAD_SECONDS = 6
CELLS = [
    "<!--md--># Pool under load\nThe view redraws from the pool's own events while `run_load` keeps it busy.",
    """import workbench
from workbench.teaching.loadgen import run_load
from workbench.notebook.widgets.pool_status import pool_status

wb = workbench.connect()
engine = wb.engine()
view = pool_status(engine, title="local stand-in, direct", interval=0.2)
view""",
    f"""result = await run_load(engine, 4, duration={LOAD_SECONDS})
view.stop()
print(f"queries={{result.queries}} errors={{result.errors}}")""",
]
LOAD = 2  # index of the load cell (the markdown cell counts)

# The "Checkouts" figure of the widget's table, or -1 while it is not rendered.
_CHECKOUTS = """() => {
  const th = [...document.querySelectorAll('.wb-pool-status th')].find(h => h.textContent.trim() === 'Checkouts');
  if (!th) return -1;
  return parseInt(th.nextElementSibling.textContent.replace(/,/g, ''), 10);
}"""
_BUSY = """(cell) => /\\[\\*\\]/.test(cell.querySelector('.jp-InputPrompt').textContent)"""


def checkouts(page) -> int:  # type: ignore[no-untyped-def]
    return int(page.evaluate(_CHECKOUTS))


def test_pool_status_updates_while_a_load_runs(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    write_notebook(lab.root_dir, "pool_status.ipynb", CELLS)
    open_notebook(page, lab, "pool_status.ipynb")
    start_run_all(page)

    view = wait_for_output(page, ".wb-pool-status")
    load_cell = cell_at(page, LOAD).element_handle()
    # While the load cell is still running, the page shows the checkout count growing: twice, not once.
    seen: list[int] = []
    for _ in range(2):
        floor = seen[-1] if seen else 0
        page.wait_for_function(
            f"([cell]) => ({_BUSY})(cell) && ({_CHECKOUTS})() > {floor}", arg=[load_cell], timeout=LOAD_SECONDS * 1000
        )
        seen.append(checkouts(page))
    screenshot(page, "pool_status_under_load", output_of(view))

    wait_until_executed(page, timeout_ms=60_000)
    summary = wait_for_output(page, "queries=").inner_text()
    assert "errors=0" in summary, summary
    assert int(summary.split("queries=")[1].split()[0]) > 0
    assert 0 < seen[0] < seen[1] <= checkouts(page), seen  # two live redraws, then the final snapshot
