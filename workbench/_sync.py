"""Run a coroutine to completion from synchronous code, whether or not an event loop is running here."""

from __future__ import annotations

import asyncio
import concurrent.futures
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
