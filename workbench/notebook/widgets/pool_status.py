"""A live pool-status view: an ipywidgets HTML refreshed by an asyncio task while a load runs.

The view reads :class:`workbench.core.pool.PoolMonitor` snapshots (no database round trip), renders them with
:func:`render_stats` (plain, tested without a browser) and keeps a short history for the sparkline. The
refresh task runs on the loop that starts it: the kernel's loop when started from a cell (so it updates
while ``await run_load(...)`` runs in the same cell), or any loop given explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections import deque
from typing import TYPE_CHECKING

import ipywidgets as w

from workbench.core.pool import PoolMonitor, PoolStats, monitor

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

HISTORY = 240


def _sparkline(values: list[int], width: int = 160, height: int = 28, cap: int | None = None) -> str:
    """An inline SVG polyline of ``values`` (oldest first), scaled to ``cap`` or the maximum seen."""
    if len(values) < 2:
        return ""
    top = max(cap or 0, max(values), 1)
    step = width / (len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - v / top * (height - 2) - 1:.1f}" for i, v in enumerate(values))
    return (
        f'<svg width="{width}" height="{height}" class="wb-pool-spark">'
        f'<polyline fill="none" stroke="#3b82f6" stroke-width="1.5" points="{points}"/></svg>'
    )


def render_stats(stats: PoolStats, history: list[PoolStats] | None = None, title: str = "") -> str:
    """The snapshot as an HTML table (with a sparkline of connections in use when there is history)."""
    cap = stats.capacity
    if stats.size is None:
        kind = f"{stats.pool}: a new connection per checkout"
    else:
        kind = f"{stats.pool}: size {stats.size} + overflow {stats.max_overflow}"
    fill = min(stats.checked_out / cap, 1.0) if cap else 0.0
    bar = (
        '<div style="display:inline-block;width:120px;height:10px;background:#e5e7eb;vertical-align:middle">'
        f'<div style="width:{fill * 100:.0f}%;height:10px;background:{"#dc2626" if stats.waiting else "#3b82f6"}">'
        "</div></div>"
        if cap
        else ""
    )
    spark = _sparkline([s.checked_out for s in history or []], cap=cap)
    idle = "–" if stats.idle is None else str(stats.idle)
    overflow = "–" if stats.overflow is None else str(stats.overflow)
    error = f" · last: {html.escape(stats.last_error)}" if stats.last_error else ""
    rows = [
        ("Pool", html.escape(kind)),
        ("In use", f"<b>{stats.checked_out}</b>{f' / {cap}' if cap else ''} {bar} (max {stats.max_checked_out})"),
        ("Idle · overflow", f"{idle} · {overflow}"),
        ("Waiting", f"<b>{stats.waiting}</b> (max {stats.max_waiting})"),
        (
            "Checkouts",
            f"{stats.checkouts:,} · wait mean {stats.mean_wait_ms:.2f} ms, max {stats.wait_ms_max:.1f} ms",
        ),
        ("Opened · closed", f"{stats.opened:,} · {stats.closed:,}"),
        ("Recycled · invalidated", f"{stats.recycled:,} · {stats.invalidated:,} (soft {stats.soft_invalidated:,})"),
        ("Errors", f'<span style="color:{"#dc2626" if stats.errors else "inherit"}">{stats.errors:,}</span>{error}'),
    ]
    body = "".join(
        f'<tr><th style="text-align:left;padding-right:1em">{k}</th><td style="text-align:left">{v}</td></tr>'
        for k, v in rows
    )
    heading = f"<div><b>{html.escape(title)}</b></div>" if title else ""
    return f'<div class="wb-pool-status">{heading}<table>{body}</table>{spark}</div>'


class PoolStatusView:
    """The widget (:attr:`widget`) over one engine's pool monitor; :meth:`start` / :meth:`stop` the refresh."""

    def __init__(self, source: AsyncEngine | Engine | PoolMonitor, *, interval: float = 0.25, title: str = "") -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive seconds, not {interval}.")
        self.monitor = source if isinstance(source, PoolMonitor) else monitor(source)
        self.interval = interval
        self.title = title
        self.history: deque[PoolStats] = deque(maxlen=HISTORY)
        self.refreshes = 0
        self.html = w.HTML()
        self.html.add_class("wb-pool-status-view")
        self.widget = self.html
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.refresh()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PoolStatusView {state} every {self.interval}s, {self.refreshes} refreshes>"

    def _repr_mimebundle_(self, **kwargs: object) -> object:
        return self.widget._repr_mimebundle_(**kwargs)

    def refresh(self) -> PoolStats:
        """Take a snapshot, remember it and redraw."""
        stats = self.monitor.snapshot()
        self.history.append(stats)
        self.html.value = render_stats(stats, list(self.history), self.title)
        self.refreshes += 1
        return stats

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> PoolStatusView:
        """Refresh every :attr:`interval` seconds on ``loop`` (default: the running loop); idempotent."""
        if self.running:
            return self
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        target = loop or running
        if target is None:
            raise RuntimeError("No running event loop: call start() from a cell or coroutine, or pass loop=.")
        self._loop = target
        if target is running:
            self._task = target.create_task(self._run(), name="workbench-pool-status")
        else:
            future = asyncio.run_coroutine_threadsafe(self._create_task(), target)
            self._task = future.result(timeout=10)
        return self

    async def _create_task(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self._run(), name="workbench-pool-status")

    async def _run(self) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(self.interval)  # the refresh period, not a wait for a condition

    def stop(self) -> None:
        """Cancel the refresh task (from any thread) and draw a last snapshot."""
        task, loop = self._task, self._loop
        if task is not None and loop is not None and not task.done():
            loop.call_soon_threadsafe(task.cancel)
        self.refresh()

    async def aclose(self) -> None:
        """Cancel the refresh task and wait until it has ended (call on the loop that runs it)."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.refresh()


def pool_status(
    engine: AsyncEngine | Engine | None = None, *, interval: float = 0.25, title: str = "", start: bool = True
) -> PoolStatusView:
    """A live view of ``engine``'s pool (default: the current workbench's engine on the running loop)."""
    if engine is None:
        from workbench.notebook.session import current

        engine = current().engine()
    view = PoolStatusView(engine, interval=interval, title=title)
    return view.start() if start else view
