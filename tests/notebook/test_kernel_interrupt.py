"""Interrupting the kernel during a long %%sbquery cancels it on the server and leaves no identity behind."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from jupyter_client.manager import KernelManager


@pytest.fixture()
def kernel(standin) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    env = dict(os.environ, WORKBENCH_LOCAL_DIR=str(standin.data_dir))
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def execute(kc: Any, code: str, timeout: float = 60) -> dict[str, Any]:
    """Run ``code``; return the reply content plus the text outputs seen on iopub."""
    msg_id = kc.execute(code)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    return dict(reply["content"])


async def _active_sleepers(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "select count(*) from pg_stat_activity where state = 'active' and query like '%pg_sleep(120)%' "
                "and pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()


async def _wait_for(condition, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)  # polling the server's view until the condition holds
    raise AssertionError("condition not met in time")


async def test_interrupt_cancels_the_query_and_clears_the_identity(kernel, standin) -> None:  # type: ignore[no-untyped-def]
    km, kc = kernel
    setup = execute(kc, "%load_ext workbench\n%sbimpersonate alice@example.com")
    assert setup["status"] == "ok", setup
    msg_id = kc.execute("%%sbquery\nselect pg_sleep(120), auth.uid()")
    dsn = standin.dsn()
    await _wait_for(lambda: _count_is(dsn, 1))
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=60)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=60)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    await _wait_for(lambda: _count_is(dsn, 0), timeout=10)  # cancelled on the server, not left running
    check = execute(
        kc,
        "%sbimpersonate --none\n"
        "seen = %sbquery select current_user as u, auth.uid() as uid, auth.jwt() as j\n"
        "assert (seen['u'][0], seen['uid'][0], seen['j'][0]) == ('postgres', None, None), seen\n"
        "again = %sbquery --as bob@example.com select count(*) as n from public.tasks\n"
        "assert again['n'][0] == 2, again",
    )
    assert check["status"] == "ok", check


async def _count_is(dsn: str, expected: int) -> bool:
    return await _active_sleepers(dsn) == expected
