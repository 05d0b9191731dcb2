"""Property: without ``--write`` nothing commits, and the next cell sees a clean session, whatever the cell.

Hypothesis builds cells from quoting modes the splitter and the server may read differently (``E''`` strings,
``\\'``, doubled quotes, dollar quotes with tags, ``--`` and nested ``/* */`` comments, a ``--`` comment ended
by ``\\r``), statements that change ``standard_conforming_strings`` / ``backslash_quote`` for the rest of the
transaction, and payloads that sometimes try to commit and insert a marker row or to leave session state
behind. Each cell runs through PgBouncer with ONE server connection, as ``postgres`` or as a user; afterwards
the marker table must be empty and a probe cell, as another identity, must see a fresh session.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability.figures import Figures
from workbench.core.engine import EngineOptions, create_engine
from workbench.core.errors import WorkbenchError
from workbench.core.identity import Identity, IdentityError
from workbench.core.query import QueryUsageError, run_query
from workbench.core.settings import ConnectionMode
from workbench.core.sqltext import SQLSyntaxError
from workbench.local.standin import LocalStandIn

pytestmark = pytest.mark.pgbouncer

MARKER = f"public.wb_prop_marker_{uuid.uuid4().hex[:8]}"
ALICE = Identity(
    role="authenticated",
    claims={"sub": "11111111-1111-4111-8111-111111111111", "role": "authenticated", "email": "alice@example.com"},
)
BOB = Identity(
    role="authenticated",
    claims={"sub": "22222222-2222-4222-8222-222222222222", "role": "authenticated", "email": "bob@example.com"},
)
REFUSED = (WorkbenchError, QueryUsageError, IdentityError, SQLSyntaxError, ValueError)
PROBE = """
select current_user as cu, session_user as su, auth.uid()::text as uid,
  (select count(*) from pg_catalog.pg_class where relnamespace = pg_catalog.pg_my_temp_schema()) as temp_rels,
  (select count(*) from pg_catalog.pg_cursors where is_holdable) as held_cursors,
  (select count(*) from pg_catalog.pg_listening_channels()) as channels,
  (select count(*) from pg_catalog.pg_locks where locktype = 'advisory' and pid = pg_catalog.pg_backend_pid())
    as advisory_locks,
  (select count(*) from pg_catalog.pg_prepared_statements where from_sql) as sql_prepared,
  current_setting('standard_conforming_strings') as scs, current_setting('backslash_quote') as backslash_quote,
  current_setting('default_transaction_read_only') as default_read_only, current_setting('search_path') as path,
  nullif(current_setting('app.wb_prop', true), '') as app_setting
"""

# Payloads: what an attacker wants to run. {m} is the marker table.
PAYLOADS = [
    "insert into {m} values (1)",
    "commit; insert into {m} values (2)",
    "end; insert into {m} values (3)",
    "commit and chain; insert into {m} values (4)",
    "rollback and chain; insert into {m} values (5)",
    "abort; insert into {m} values (6)",
    "select set_config('role', 'postgres', false)",
    "select set_config('session_authorization', 'anon', false)",
    "select set_config('app.wb_prop', 'left', false)",
    "select set_config('standard_conforming_strings', 'off', false)",
    "create temp table tasks (id bigint, title text)",
    "declare wb_c cursor with hold for select 1",
    "listen wb_prop",
    "select pg_advisory_lock(777)",
    "do $$ begin execute 'prepare wb_prop_p as select 1'; end $$",
]

SETTINGS = [
    "set local standard_conforming_strings = off",
    "set local standard_conforming_strings = on",
    "set local backslash_quote = on",
    "set local backslash_quote = off",
    "set local backslash_quote = safe_encoding",
    "set local escape_string_warning = off",
    "select set_config('standard_conforming_strings', 'off', true)",
]

words = st.text(alphabet="abc xyz;'\\$-*/\r\n", max_size=6)
tags = st.sampled_from(["", "q", "wb", "tag_1"])


@st.composite
def literal(draw: st.DrawFn) -> str:
    """A fragment in one quoting mode; its inside may hold quote characters, semicolons and comment marks."""
    inside = draw(words)
    kind = draw(st.sampled_from(["plain", "doubled", "backslash", "e", "dollar", "ident", "line", "block"]))
    if kind == "plain":
        return "'" + inside.replace("'", "") + "'"
    if kind == "doubled":
        return "'" + inside.replace("'", "''") + "'"
    if kind == "backslash":  # the splitter's and the server's readings differ once scs is off
        return "'" + inside.replace("'", "\\'") + "\\''"
    if kind == "e":
        return "E'" + inside.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if kind == "dollar":
        tag = draw(tags)
        return f"${tag}$" + inside.replace("$", "") + f"${tag}$"
    if kind == "ident":
        return '"' + inside.replace('"', "") + 'x"'
    if kind == "line":
        return "-- " + inside + draw(st.sampled_from(["\n", "\r", "\r\n"]))
    return "/* " + inside.replace("*/", "").replace("/*", "") + " /* nested */ */"


@st.composite
def cell(draw: st.DrawFn) -> str:
    """A cell: settings, harmless selects of literals, and maybe a payload hidden among them."""
    parts: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        choice = draw(st.sampled_from(["setting", "select", "hide", "plain"]))
        payload = draw(st.sampled_from(PAYLOADS)).format(m=MARKER)
        if choice == "setting":
            parts.append(draw(st.sampled_from(SETTINGS)))
        elif choice == "select":
            parts.append("select " + " , ".join(draw(st.lists(literal(), min_size=1, max_size=3))))
        elif choice == "hide":  # the reported attack and its relatives: payload inside a quoting mode
            opener = draw(st.sampled_from(["select 'a\\''", "select E'\\''", "select 'b''", "select 1 -- c\r"]))
            closer = draw(st.sampled_from([" --'", " /* ' */", "; select '1' --'", ""]))
            parts.append(f"{opener}; {payload}{closer}")
        else:
            parts.append(payload)
    return ";\n".join(parts)


@pytest.fixture(scope="module")
def rig(standin: LocalStandIn, pgbouncer_factory) -> Any:  # type: ignore[no-untyped-def]
    """A private event loop with an engine through a one-server-connection PgBouncer (hypothesis drives a
    synchronous test, so the async work runs on this loop)."""
    bouncer = pgbouncer_factory(pool_size=1)
    loop = asyncio.new_event_loop()
    engine = create_engine(bouncer.url, ConnectionMode.TRANSACTION, EngineOptions(pool_size=2, max_overflow=0))

    async def setup() -> dict[str, Any]:
        conn = await asyncpg.connect(standin.dsn())
        try:
            await conn.execute(
                f"create table {MARKER} (n int); grant insert, select on {MARKER} to anon, authenticated, service_role"
            )
        finally:
            await conn.close()
        return await probe(engine, Identity.none())

    fresh = loop.run_until_complete(setup())
    yield loop, engine, fresh

    async def teardown() -> None:
        await engine.dispose()
        conn = await asyncpg.connect(standin.dsn())
        try:
            await conn.execute(f"drop table if exists {MARKER}")
        finally:
            await conn.close()

    loop.run_until_complete(teardown())
    loop.close()


async def probe(engine: Any, identity: Identity) -> dict[str, Any]:
    import pandas as pd

    row = (await run_query(engine, PROBE, identity=identity)).frame.iloc[0]
    return {k: (None if v is None or v is pd.NA else v) for k, v in row.items()}


async def marker_rows(engine: Any) -> int:
    return int((await run_query(engine, f"select count(*) as n from {MARKER}")).frame["n"][0])


COUNTS = {"cells": 0, "refused": 0, "ran": 0}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(sql=cell(), who=st.sampled_from([Identity.none(), ALICE, Identity.anon()]), write=st.booleans())
def test_nothing_commits_without_write_and_the_next_cell_is_clean(
    rig: Any, sql: str, who: Identity, write: bool
) -> None:
    loop, engine, fresh = rig

    async def check() -> None:
        COUNTS["cells"] += 1
        try:
            await run_query(engine, sql, identity=who, write=write)
            COUNTS["ran"] += 1
        except REFUSED:
            COUNTS["refused"] += 1
        if not write:
            assert await marker_rows(engine) == 0, f"a read-only cell committed a marker row: {sql!r}"
        else:  # a --write cell may insert the marker honestly; start the next example from an empty table
            await run_query(engine, f"delete from {MARKER}", write=True)
        seen = await probe(engine, BOB)
        want = dict(fresh, cu="authenticated", uid=BOB.claims["sub"])  # type: ignore[index]
        assert seen == want, f"after {sql!r} ({'write' if write else 'read-only'}, {who.describe()})"

    loop.run_until_complete(check())


def test_the_property_ran_enough_cells(rig: Any, figures: Figures) -> None:
    """Guard against a strategy that silently generates nothing useful: cells both ran and were refused."""
    if COUNTS["cells"] == 0:  # selected alone (-k): run the property here first
        test_nothing_commits_without_write_and_the_next_cell_is_clean(rig)
    figures.add("read_only", "property_cells", COUNTS["cells"])
    assert COUNTS["ran"] > 0 and COUNTS["refused"] > 0, COUNTS
