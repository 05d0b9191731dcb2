"""SQL names: the one place that quotes PostgreSQL identifiers and knows the reserved key words.

Names that reach SQL text come from the catalogs or from validated input, never as values; values are
always bound parameters. ``quote_ident`` follows PostgreSQL's own ``quote_ident()``: quotes only when
needed (upper case, odd characters, a leading digit, or a reserved key word).
"""

from __future__ import annotations

import re

__all__ = ["RESERVED_WORDS", "qualified_name", "quote_ident", "quote_literal"]

# PostgreSQL 16's key words marked "reserved" or "reserved (can be function or type)" in Appendix C:
# as identifiers they need double quotes. (Non-reserved key words, such as ``between``, do not.)
# fmt: off
RESERVED_WORDS: frozenset[str] = frozenset("""
    all analyse analyze and any array as asc asymmetric authorization binary both case cast check collate
    collation column concurrently constraint create cross current_catalog current_date current_role
    current_schema current_time current_timestamp current_user default deferrable desc distinct do else end
    except false fetch for foreign freeze from full grant group having ilike in initially inner intersect into
    is isnull join lateral leading left like limit localtime localtimestamp natural not notnull null offset on
    only or order outer overlaps placing primary references returning right select session_user similar some
    symmetric system_user table tablesample then to trailing true union unique user using variadic verbose when
    where window with
""".split())  # noqa: SIM905 - a word list reads best as text
# fmt: on

_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")


def quote_ident(name: str) -> str:
    """``tasks`` -> ``tasks``; ``user`` -> ``"user"``; ``Order Items`` -> ``"Order Items"``."""
    if _PLAIN.fullmatch(name) and name not in RESERVED_WORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified_name(schema: str, name: str) -> str:
    """``schema.name`` quoted for SQL text: ``public."user"``."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def quote_literal(text: str) -> str:
    """A SQL string literal, for DDL that cannot take parameters (comments, generated files)."""
    return "'" + text.replace("'", "''") + "'"
