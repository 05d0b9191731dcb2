"""Names: PostgreSQL identifiers quoted only where they must be, and Python names for tables and columns.

Shared by the code generator, its DDL and the reflection; one place for the reserved-word lists.
"""

from __future__ import annotations

import keyword
import re
import unicodedata

from workbench.core.sqlnames import RESERVED_WORDS, qualified_name, quote_literal
from workbench.core.sqlnames import quote_ident as quote_ident  # re-exported: codegen and ddl import it from here

SA = "sqlalchemy"
PG = "sqlalchemy.dialects.postgresql"
ORM = "sqlalchemy.orm"
IMPORTABLE = {
    SA: {
        "BigInteger", "Boolean", "CHAR", "CheckConstraint", "Column", "Computed", "DDL", "Date", "DateTime",
        "Double", "Enum", "ForeignKey", "ForeignKeyConstraint", "Identity", "Index", "Integer", "LargeBinary",
        "MetaData", "Numeric", "PrimaryKeyConstraint", "REAL", "Sequence", "SmallInteger", "String", "Table",
        "Text", "Time", "UniqueConstraint", "Uuid", "event", "text",
    },
    PG: {
        "ARRAY", "BIT", "CIDR", "DATEMULTIRANGE", "DATERANGE", "DOMAIN", "ENUM", "HSTORE", "INET", "INT4MULTIRANGE",
        "INT4RANGE", "INT8MULTIRANGE", "INT8RANGE", "INTERVAL", "JSON", "JSONB", "MACADDR", "MACADDR8", "MONEY",
        "NUMMULTIRANGE", "NUMRANGE", "OID", "REGCLASS", "REGCONFIG", "TIME", "TIMESTAMP", "TSMULTIRANGE",
        "TSQUERY", "TSRANGE", "TSTZMULTIRANGE", "TSTZRANGE", "TSVECTOR", "Range",
    },
    ORM: {"DeclarativeBase", "Mapped", "mapped_column", "relationship"},
    "sqlalchemy.types": {"UserDefinedType"},
    "sqlalchemy.engine": {"Connection"},
    "decimal": {"Decimal"},
    "typing": {"Any", "TYPE_CHECKING"},
}  # fmt: skip
# Names a column attribute must never take: class bodies call these (a column named ``text`` would
# otherwise shadow ``text()`` for the columns after it) or SQLAlchemy reserves them.
RESERVED = (
    set(keyword.kwlist)
    | {"metadata", "registry", "datetime", "enum", "uuid", "list", "str", "int", "float", "bool", "bytes", "dict"}
    | {"Base", "PgType", "view_metadata"}
    | {name for names in IMPORTABLE.values() for name in names}
)

PG_RESERVED = RESERVED_WORDS  # one list for the whole package: workbench.core.sqlnames


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[\W_]+", unicodedata.normalize("NFKC", name)) if w]


def singular(word: str) -> str:
    """A cautious English singular: ``tasks`` -> ``task``, ``categories`` -> ``category``; unsure: unchanged."""
    low = word.lower()
    if len(word) > 4 and low.endswith("ies") and not low.endswith(("eies", "aies")):
        return word[:-3] + ("Y" if word[-3:].isupper() else "y")
    if low.endswith(("sses", "shes", "ches", "xes", "zzes", "atuses")):
        return word[:-2]
    if low.endswith(("ss", "us", "is", "news", "series", "species", "ics")) or len(word) <= 2:
        return word
    if low.endswith("s"):
        return word[:-1]
    return word


def pascal(name: str, *, singularize: bool = False) -> str:
    """``film_actor`` -> ``FilmActor`` (``film_actors`` -> ``FilmActor`` with ``singularize``)."""
    words = _words(name)
    if singularize and words:
        words[-1] = singular(words[-1])
    text = "".join(w[:1].upper() + w[1:] for w in words) or "Table"
    if text[0].isdigit():
        text = "T" + text
    return text if text.isidentifier() else "Table"


def snake(name: str) -> str:
    """A valid lower-case identifier for ``name``."""
    text = "_".join(_words(name)).lower() or "x"
    if text[0].isdigit():
        text = "_" + text
    return text if text.isidentifier() else "x"


def attribute_name(name: str) -> str:
    """The attribute for a column: the column name when Python accepts it as it is."""
    if name.isidentifier() and unicodedata.normalize("NFKC", name) == name and not name.startswith("__"):
        return name
    return snake(name)


def free_name(name: str, used: set[str], also: set[str] | frozenset[str] = frozenset()) -> str:
    """``name``, or ``name_``, ``name__``... whichever is not taken (in ``used`` or ``also``) nor reserved."""
    while name in used or name in also or keyword.iskeyword(name) or name in RESERVED:
        name += "_"
    used.add(name)
    return name


def strip_id(name: str) -> str:
    low = name.lower()
    if low.endswith("_id"):
        return name[:-3]
    if low.endswith("id") and len(name) > 2:
        return name[:-2].rstrip("_")
    return ""


qualified_ident = qualified_name
sql_literal = quote_literal


def unquote(ident: str) -> str:
    if ident.startswith('"') and ident.endswith('"'):
        return ident[1:-1].replace('""', '"')
    return ident


def split_qualified(text: str) -> tuple[str | None, str]:
    """``public."My Seq"`` -> (``public``, ``My Seq``)."""
    parts = re.findall(r'"(?:[^"]|"")*"|[^.]+', text)
    if len(parts) == 2:
        return unquote(parts[0]), unquote(parts[1])
    return None, unquote(text)
