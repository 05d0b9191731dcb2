"""SQL names: quoting follows PostgreSQL, and the reserved words are exactly the server's."""

from __future__ import annotations

import asyncpg
import pytest

from workbench.core.sqlnames import RESERVED_WORDS, qualified_name, quote_ident, quote_literal


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("tasks", "tasks"),
        ("user", '"user"'),
        ("system_user", '"system_user"'),
        ("Order Items", '"Order Items"'),
        ('a"b', '"a""b"'),
        ("1st", '"1st"'),
        ("between", "between"),  # a non-reserved key word needs no quotes
    ],
)
def test_quote_ident(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


def test_qualified_name_and_literal() -> None:
    assert qualified_name("public", "Order") == 'public."Order"'
    assert quote_literal("it's") == "'it''s'"


async def test_reserved_words_are_the_servers(pg_dsn: str) -> None:
    """Every key word PostgreSQL reserves (catcode R or T) is in the list, and nothing else is."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("select word from pg_get_keywords() where catcode in ('R', 'T')")
        server = {r["word"] for r in rows}
        for word in sorted(server):  # and quote_ident agrees with the server's own quote_ident()
            assert quote_ident(word) == await conn.fetchval("select quote_ident($1)", word)
    finally:
        await conn.close()
    assert server == RESERVED_WORDS
