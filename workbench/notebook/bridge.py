"""The one bridge from synchronous code to async code.

Two ways across, for two needs: :func:`run_sync` runs one coroutine to completion (``asyncio.run``, or
the same on a short-lived thread when a loop is already running here, as in a notebook cell);
:class:`LoopThread` / :func:`shared_loop` keep a private event loop on a daemon thread, so synchronous
callers (magics, widget callbacks) can use long-lived async objects (engines, pools, clients) while the
kernel's own loop is busy running the cell. Those objects are created and used on that loop only; the
user's own ``await`` code uses engines bound to the kernel's loop (see ``workbench.notebook.session``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` when this thread has no running loop, else the same in a short-lived worker thread.

    The second case is a notebook cell or an IPython magic, where the kernel's loop is running and
    ``asyncio.run`` would raise; objects made inside ``coro`` must not escape to another loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-sync") as pool:
        return pool.submit(asyncio.run, coro).result()


class LoopThread:
    """One event loop running forever on a daemon thread."""

    def __init__(self, name: str = "workbench-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], cancel_grace: float = 30.0) -> T:
        """Run ``coro`` on the loop and wait for it. A KeyboardInterrupt (kernel interrupt) cancels the
        task and waits for its clean-up (asyncpg cancels the query on the server, the transaction is
        rolled back) before re-raising."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.run called from its own loop; await the coroutine instead")
        started: concurrent.futures.Future[asyncio.Task[T]] = concurrent.futures.Future()
        done = threading.Event()

        def start() -> None:
            task = self.loop.create_task(coro)
            task.add_done_callback(lambda _t: done.set())
            started.set_result(task)

        self.loop.call_soon_threadsafe(start)
        task = started.result()
        try:
            done.wait()
        except KeyboardInterrupt:
            self.loop.call_soon_threadsafe(task.cancel)
            done.wait(cancel_grace)
            raise
        return task.result()

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


_shared: LoopThread | None = None
_lock = threading.Lock()


def shared_loop() -> LoopThread:
    """The process-wide background loop, started on first use."""
    global _shared
    with _lock:
        if _shared is None or not _shared._thread.is_alive():
            _shared = LoopThread()
        return _shared
