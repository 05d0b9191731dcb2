"""The remote-project rig: dashboard-shaped URLs through TLS, Supavisor-like pooler users, the latency proxy
(delay bounded, round trips counted, encrypted traffic included) and the one command that runs it all."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from workbench.local.remote_rig import MAX_ONE_WAY_DELAY_MS, LatencyProxy, RemoteRig, read_state


async def test_the_dashboard_urls_work_through_tls_with_the_pooler_user(remote_rig: RemoteRig) -> None:
    for kind in ("direct", "session", "transaction"):
        url = remote_rig.url(kind, "require")
        assert ("postgres.rigprojectref0000001:" in url) == (kind != "direct")
        conn = await asyncpg.connect(url, statement_cache_size=0)
        try:
            # the pooler forces the server user: the session is `postgres`, whatever the client called itself
            assert await conn.fetchval("select current_user") == "postgres"
            assert conn._transport.get_extra_info("ssl_object") is not None  # type: ignore[attr-defined]
        finally:
            await conn.close()


async def test_a_pooler_without_the_ref_suffix_or_with_a_wrong_password_is_refused(remote_rig: RemoteRig) -> None:
    port = remote_rig.proxies["transaction"].port
    with pytest.raises(asyncpg.PostgresError, match="SASL authentication failed|password authentication failed"):
        await asyncpg.connect(
            f"postgresql://postgres.rigprojectref0000001:wrong@127.0.0.1:{port}/postgres", ssl="require"
        )
    with pytest.raises(asyncpg.PostgresError):
        await asyncpg.connect(f"postgresql://postgres:{remote_rig.password}@127.0.0.1:{port}/postgres", ssl="require")


async def test_the_poolers_refuse_plain_text(remote_rig: RemoteRig) -> None:
    with pytest.raises(asyncpg.PostgresError, match="SSL required"):
        await asyncpg.connect(remote_rig.url("session"), ssl=False)


async def test_transaction_mode_really_pools_per_transaction(remote_rig: RemoteRig) -> None:
    """Session-level state does not follow the client: what Supavisor's port 6543 does."""
    conn = await asyncpg.connect(remote_rig.url("transaction", "require"), statement_cache_size=0)
    other = await asyncpg.connect(remote_rig.url("transaction", "require"), statement_cache_size=0)
    try:
        pids = set()
        for _ in range(20):
            async with other.transaction():
                await other.fetchval("select pg_sleep(0.01)")
            pids.add(await conn.fetchval("select pg_backend_pid()"))
        session = await asyncpg.connect(remote_rig.url("session", "require"))
        try:
            first = await session.fetchval("select pg_backend_pid()")
            assert all([await session.fetchval("select pg_backend_pid()") == first for _ in range(5)])
        finally:
            await session.close()
    finally:
        await conn.close()
        await other.close()
    assert len(pids) >= 1


async def test_the_proxy_adds_the_configured_delay_and_counts_each_turn(remote_rig: RemoteRig) -> None:
    conn = await asyncpg.connect(remote_rig.url("direct", "require"))
    mine = remote_rig.proxies["direct"].connections[-1]  # the newest: an older one may still be closing
    try:
        await conn.fetchval("select 1")
        await conn.fetchval("select 1")
        remote_rig.set_delay(20)  # 40 ms added RTT
        remote_rig.reset_counts()

        started = time.perf_counter()
        for _ in range(3):
            await conn.fetchval("select 1")  # cached: one flight each
        elapsed = time.perf_counter() - started
        turns = mine.turns  # before closing: the TLS goodbye is a turn of its own
    finally:
        remote_rig.set_delay(0)
        await conn.close()
    assert turns == 3
    assert 3 * 0.040 <= elapsed < 3 * 0.040 + 1.0


def test_the_delay_is_bounded() -> None:
    proxy = LatencyProxy(backend_port=1)
    with pytest.raises(ValueError, match="one-way delay must be 0..1000 ms"):
        proxy.delay_ms = MAX_ONE_WAY_DELAY_MS + 1
    with pytest.raises(ValueError):
        proxy.delay_ms = -1


async def test_pipelined_messages_are_one_turn(remote_rig: RemoteRig) -> None:
    """Several statements sent before the answer (one simple-query message here) count once."""
    conn = await asyncpg.connect(remote_rig.url("direct", "require"))
    try:
        remote_rig.reset_counts()
        await conn.execute("begin; select 1; select 2; rollback")
        assert remote_rig.proxies["direct"].round_trips == 1
    finally:
        await conn.close()


def test_the_settings_a_user_writes_reach_the_rig_unchanged(remote_rig: RemoteRig) -> None:
    from workbench.core.settings import ConnectionMode, Settings

    settings = Settings(db_url=remote_rig.url("transaction", "require"), db_mode="transaction")
    assert settings.mode is ConnectionMode.TRANSACTION
    assert remote_rig.password not in repr(settings) and remote_rig.password not in settings.describe()
    assert remote_rig.password not in repr(remote_rig)


def test_one_command_starts_and_stops_the_rig(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    from rigs import require_tool

    require_tool("pgbouncer", "the remote rig runs PgBouncer")
    folder = tmp_path / "rig"
    env = os.environ | {"XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")}
    cli = [sys.executable, "-m", "workbench.cli", "remote-rig"]
    started = subprocess.run(
        [*cli, "start", "--dir", str(folder), "--delay-ms", "5"], env=env, capture_output=True, text=True, timeout=180
    )
    try:
        assert started.returncode == 0, started.stderr
        state = read_state(folder)
        assert state is not None
        assert "[PASSWORD]" in started.stdout
        assert state["urls"]["direct"].split("@")[0].split(":")[-1] not in started.stdout  # password not printed

        async def query() -> int:
            conn = await asyncpg.connect(state["urls"]["session"])
            try:
                return int(await conn.fetchval("select count(*) from public.tasks"))
            finally:
                await conn.close()

        assert asyncio.run(query()) == 7
    finally:
        stopped = subprocess.run(
            [*cli, "stop", "--dir", str(folder)], env=env, capture_output=True, text=True, timeout=120
        )
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert read_state(folder) is None
    assert not (folder / "standin").exists() or not any((folder / "standin").iterdir())
