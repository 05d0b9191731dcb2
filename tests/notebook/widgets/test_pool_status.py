"""The live pool-status widget: its values change while a load runs, and it stops cleanly."""

from __future__ import annotations

import asyncio
import threading

import pytest

from workbench.core.engine import EngineOptions, create_engine
from workbench.core.pool import PoolStats, monitor
from workbench.notebook.bridge import shared_loop
from workbench.notebook.widgets.pool_status import PoolStatusView, pool_status, render_stats
from workbench.teaching.loadgen import demo_identities, run_load


def stats(**changes: object) -> PoolStats:
    base: dict[str, object] = dict(
        pool="AsyncAdaptedQueuePool",
        size=2,
        max_overflow=1,
        idle=0,
        overflow=1,
        checked_out=3,
        max_checked_out=3,
        waiting=4,
        max_waiting=5,
        checkouts=1200,
        opened=3,
        closed=0,
        recycled=1,
        invalidated=2,
        soft_invalidated=0,
        errors=1,
        timed_checkouts=1200,
        wait_ms_total=600.0,
        wait_ms_max=12.5,
        last_error="TimeoutError: QueuePool limit <reached>",
        at=0.0,
    )
    return PoolStats(**(base | changes))  # type: ignore[arg-type]


def test_render_shows_use_waiters_history_and_escapes_errors() -> None:
    busy = stats()
    page = render_stats(busy, [stats(checked_out=n) for n in (0, 1, 3)], title="direct <pool>")
    assert "<b>3</b> / 3" in page and "(max 3)" in page
    assert "<b>4</b> (max 5)" in page and "#dc2626" in page, "waiters turn the bar red"
    assert "1,200 · wait mean 0.50 ms, max 12.5 ms" in page
    assert "QueuePool limit &lt;reached&gt;" in page and "direct &lt;pool&gt;" in page
    assert "<polyline" in page
    null = render_stats(stats(pool="NullPool", size=None, max_overflow=None, idle=None, overflow=None, waiting=0))
    assert "a new connection per checkout" in null and " / " not in null.split("In use")[1].split("</tr>")[0]
    assert "<polyline" not in null


async def test_the_widget_changes_while_a_load_runs_and_stops_cleanly(db_url: str) -> None:
    engine = create_engine(db_url, "direct", EngineOptions(pool_size=2, max_overflow=0))
    try:
        people = await demo_identities(engine)
        view = PoolStatusView(engine, interval=0.02, title="direct, pool of 2").start()
        assert view.running and view.start() is view
        before = view.html.value
        seen: set[str] = set()
        view.html.observe(lambda change: seen.add(change["new"]), names="value")
        result = await run_load(engine, 6, duration=0.8, identities=people)
        during = list(view.history)
        await view.aclose()
        assert not view.running and view._task is not None and view._task.cancelled()
    finally:
        monitor(engine).detach()
        await engine.dispose()
    assert result.queries > 0 and result.errors == 0
    assert len(seen) >= 3 and view.html.value != before, "the HTML was redrawn with new figures"
    assert max(s.checked_out for s in during) == 2, "the view saw both pooled connections in use"
    assert max(s.waiting for s in during) >= 1, "and clients waiting for one"
    assert during[-1].checkouts > during[0].checkouts
    assert "<b>0</b> / 2" in view.html.value, "after the load: nothing in use"


def test_refreshing_from_the_background_loop_stops_from_another_thread(db_url: str) -> None:
    engine = create_engine(db_url, "direct", EngineOptions(pool_size=3, max_overflow=0))
    loop = shared_loop()
    view = pool_status(engine, interval=0.02, start=False).start(loop=loop.loop)
    try:
        assert view.running and threading.current_thread() is threading.main_thread()
        result = loop.run(run_load(engine, 3, duration=0.4, identities=loop.run(demo_identities(engine))))
        assert result.errors == 0
        assert max(s.checked_out for s in view.history) >= 1
        view.stop()
        done = threading.Event()
        loop.loop.call_soon_threadsafe(lambda: view._task.add_done_callback(lambda _t: done.set()))  # type: ignore[union-attr]
        assert done.wait(5) and not view.running
    finally:
        monitor(engine).detach()
        loop.run(engine.dispose())


def test_bad_interval_and_no_loop_are_clear_errors(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with pytest.raises(ValueError, match="positive"):
            PoolStatusView(engine, interval=0)
        with pytest.raises(RuntimeError, match="No running event loop"):
            PoolStatusView(engine).start()
        assert "stopped" in repr(PoolStatusView(engine))
    finally:
        monitor(engine).detach()
        asyncio.run(engine.dispose())
