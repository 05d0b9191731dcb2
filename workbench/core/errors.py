"""Turn database and connection errors into one short message with a hint.

The magics, the FastAPI layer and the retry helper all show the same failures: PostgreSQL errors
(raw from asyncpg, or wrapped by SQLAlchemy), Supavisor / PgBouncer pooler refusals and OS-level
connection errors. :func:`classify` maps each to a :class:`Category`, a message that says what went wrong
in Supabase terms, a hint that says how to fix it, and whether a retry on a fresh connection is safe.
Every message passes through :func:`redact`, because these texts end up in saved notebooks and logs.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace

import asyncpg
import sqlalchemy.exc

from workbench.core import sqltext
from workbench.core.exceptions import WorkbenchUserError
from workbench.core.redaction import redact  # re-exported: redaction has its own module now
from workbench.core.tls import TLSError

__all__ = [
    "Category",
    "ClassifiedError",
    "WorkbenchError",
    "WorkbenchUserError",
    "classify",
    "redact",
    "render_position",
    "unwrap",
]


class Category(enum.StrEnum):
    RLS_VIOLATION = "rls_violation"
    PERMISSION = "permission"
    UNDEFINED_TABLE = "undefined_table"
    UNDEFINED_COLUMN = "undefined_column"
    UNDEFINED_FUNCTION = "undefined_function"
    SYNTAX = "syntax"
    PARAMETER = "parameter"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    AUTH_FAILED = "auth_failed"
    CONNECTION = "connection"
    POOLER = "pooler"
    PREPARED_STATEMENT = "prepared_statement"
    READ_ONLY = "read_only"
    UNIQUE_VIOLATION = "unique_violation"
    FK_VIOLATION = "fk_violation"
    NOT_NULL = "not_null"
    CHECK_VIOLATION = "check_violation"
    DATA = "data"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ClassifiedError:
    """What went wrong, how to fix it, and whether retrying on a new connection is safe."""

    category: Category
    message: str
    hint: str
    sqlstate: str | None = None
    transient: bool = False
    position: int | None = None  # 1-based character offset into the SQL, as PostgreSQL reports it

    def render(self) -> str:
        return f"{self.message}\nhint: {self.hint}" if self.hint else self.message


class WorkbenchError(WorkbenchUserError):
    """An error already explained for the user; ``str()`` is the message and its hint, secrets masked."""

    def __init__(self, classified: ClassifiedError) -> None:
        super().__init__(classified.render())
        self.classified = classified

    @classmethod
    def from_exception(cls, exc: BaseException, sql: str | None = None) -> WorkbenchError:
        return cls(classify(exc, sql))

    @property
    def category(self) -> Category:
        return self.classified.category

    @property
    def transient(self) -> bool:
        return self.classified.transient

    def __str__(self) -> str:
        return self.classified.render()


# ---------------------------------------------------------------------------------------------------------
# caret rendering

_MAX_LINE = 100


def render_position(sql: str, position: int) -> str:
    """The line holding PostgreSQL's 1-based character ``position``, with a caret under that character."""
    offset = min(max(position, 1) - 1, len(sql))
    line_no = sql.count("\n", 0, offset) + 1
    line_start = sql.rfind("\n", 0, offset) + 1
    line_end = sql.find("\n", offset)
    line = sql[line_start : len(sql) if line_end < 0 else line_end].rstrip("\r")
    col = offset - line_start
    if len(line) > _MAX_LINE:  # show a window around the caret
        lo = max(0, col - _MAX_LINE // 2)
        hi = min(len(line), lo + _MAX_LINE)
        lo = max(0, hi - _MAX_LINE)
        prefix, suffix = ("..." if lo > 0 else ""), ("..." if hi < len(line) else "")
        line = prefix + line[lo:hi] + suffix
        col = col - lo + len(prefix)
    label = f"LINE {line_no}: "
    pad = "".join("\t" if ch == "\t" else " " for ch in line[:col])
    return f"{label}{line}\n{' ' * len(label)}{pad}^"


# ---------------------------------------------------------------------------------------------------------
# unwrapping


def _explicit_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it explicitly wraps: SQLAlchemy's ``.orig`` and ``raise ... from`` causes."""
    chain: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(chain) < 32:
        cur = todo.pop(0)
        if any(cur is seen for seen in chain):
            continue
        chain.append(cur)
        orig = getattr(cur, "orig", None)
        if isinstance(orig, BaseException):
            todo.append(orig)
        if cur.__cause__ is not None:
            todo.append(cur.__cause__)
    return chain


_KNOWN = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    asyncio.CancelledError,
    KeyboardInterrupt,
    sqltext.SQLSyntaxError,
    sqltext.MissingParameter,
    sqlalchemy.exc.TimeoutError,
)


def unwrap(exc: BaseException) -> BaseException:
    """The most telling error inside ``exc``: a PostgreSQL error if any, else a known client error."""
    chain = _explicit_chain(exc)
    for cur in chain:
        if isinstance(cur, asyncpg.PostgresError):
            return _as_exception(cur)
    for cur in chain:
        if isinstance(cur, _KNOWN):
            return cur
    # Errors raised while handling another (a failed rollback after a failed statement) point back to it.
    cur = exc
    for _ in range(8):
        if cur.__context__ is None or cur.__suppress_context__:
            break
        cur = cur.__context__
        if isinstance(cur, asyncpg.PostgresError):
            return _as_exception(cur)
    return exc


def _as_exception(exc: BaseException) -> BaseException:
    """asyncpg ships no type information: isinstance() against its classes narrows to Any."""
    return exc


# ---------------------------------------------------------------------------------------------------------
# classification

_PORTS = "Port 6543 is transaction mode (shared connections, no prepared statements); 5432 is session mode."


# (message pattern, transient, what happened, hint); Supavisor's old and new wordings and PgBouncer's
_POOLER_RULES: list[tuple[re.Pattern[str], bool, str, str]] = [
    (
        re.compile(r"tenant or user not found|tenant/user .* not found", re.I),
        False,
        "The pooler (Supavisor) could not find your project for this user",
        "Through the pooler the user must carry the project ref: `postgres.<project-ref>`, not "
        "`postgres`; copy host and user from the dashboard's Connect dialog (the aws-0 / aws-1 "
        f"host part differs between projects). {_PORTS}",
    ),
    (
        re.compile(r"max clients reached in session mode", re.I),
        True,
        "The pooler's session mode is full: it allows only pool_size clients at once",
        "Use transaction mode (port 6543, with statement_cache_size=0) for many short-lived clients, "
        "close idle connections, or raise the pool size in the dashboard's database settings. "
        f"{_PORTS}",
    ),
    (
        re.compile(r"max client connections reached|no more connections allowed", re.I),
        True,
        "The pooler is at its client connection limit",
        "Close idle engines and notebooks, lower pool_size (or use NullPool in serverless code); the "
        f"limit depends on the compute size. {_PORTS}",
    ),
    (
        re.compile(r"unable to check out connection from the pool|query_wait_timeout", re.I),
        True,
        "The pooler had no free server connection in time",
        "Long transactions hold server connections in transaction mode: keep them short, retry, or "
        f"raise the pool size. {_PORTS}",
    ),
    (
        re.compile(r"pgbouncer cannot connect to server", re.I),
        True,
        "The pooler could not reach the database server",
        f"The database may be restarting or paused; retry shortly. {_PORTS}",
    ),
]


def classify(exc: BaseException, sql: str | None = None) -> ClassifiedError:
    """Explain ``exc``; pass the ``sql`` that was sent so syntax errors can point at the character."""
    if isinstance(exc, WorkbenchError):
        return exc.classified
    root = unwrap(exc)
    result = _classify(root, sql)
    return replace(result, message=redact(result.message), hint=redact(result.hint))


def _classify(root: BaseException, sql: str | None) -> ClassifiedError:
    text = _message_of(root)
    for pattern, transient, what, hint in _POOLER_RULES:
        if pattern.search(text):
            state = getattr(root, "sqlstate", None)
            return ClassifiedError(Category.POOLER, f"{what}: {text}", hint, state, transient)
    if isinstance(root, asyncpg.PostgresError):
        return _from_postgres(root, text, sql)
    if isinstance(root, asyncpg.InterfaceError):
        return _from_interface(root, text)
    if isinstance(root, asyncpg.exceptions.InternalClientError) and "cannot switch to state" in text:
        # asyncpg's protocol state is off, seen when the server's goodbye lands between two statements
        return ClassifiedError(
            Category.CONNECTION,
            f"The database connection is in a broken state: {text}",
            "The server probably closed it (restart, pg_terminate_backend, idle timeout); discard it and "
            "retry on a new connection: the statement was not sent.",
            transient=True,
        )
    if isinstance(root, asyncio.CancelledError | KeyboardInterrupt):
        return ClassifiedError(
            Category.CANCELLED,
            "The statement was cancelled.",
            "A cancelled statement's changes are rolled back; run it again when ready.",
        )
    if isinstance(root, TLSError):  # before OSError: a ConnectionError; its message names the setting
        what, _, fix = text.partition(" Fix: ")
        return ClassifiedError(Category.CONNECTION, what, f"Fix: {fix}" if fix else "Check the TLS settings.")
    if isinstance(root, TimeoutError):  # before OSError: TimeoutError is one
        return ClassifiedError(
            Category.TIMEOUT,
            "Timed out waiting for the database (client-side timeout).",
            "If connecting: check host, port and network (the direct `db.<ref>.supabase.co` host is "
            "IPv6-only; use the pooler host otherwise). If running a query: raise the timeout or make "
            "the query cheaper.",
        )
    if isinstance(root, OSError):
        return _from_os_error(root, text)
    if isinstance(root, sqlalchemy.exc.TimeoutError):
        return ClassifiedError(
            Category.CONNECTION,
            f"The SQLAlchemy connection pool is exhausted: {text.splitlines()[0]}",
            "Sessions are not being closed (use `async with`), or raise pool_size / max_overflow.",
            transient=True,
        )
    if isinstance(root, sqltext.MissingParameter):
        return ClassifiedError(
            Category.PARAMETER, text, f"Define `{root.name} = ...` in a cell before running the query."
        )
    if isinstance(root, sqltext.SQLSyntaxError):
        message = f"Syntax error: {text}"
        if sql is not None:
            message += "\n" + render_position(sql, root.position + 1)
        return ClassifiedError(
            Category.SYNTAX,
            message,
            "Close the string, quoted identifier, comment or $tag$ body that starts there.",
            position=root.position + 1,
        )
    first = text.splitlines()[0] if text else ""
    return ClassifiedError(
        Category.UNKNOWN,
        f"{type(root).__name__}: {first}" if first else type(root).__name__,
        "See the full traceback for details.",
    )


def _message_of(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    return str(exc)


def _position_of(err: asyncpg.PostgresError) -> int | None:
    raw = getattr(err, "position", None)
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _quoted(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text)
    return m.group(1) if m else None


@dataclass(frozen=True)
class _Report:
    """One PostgreSQL error, flattened for the per-SQLSTATE builders."""

    err: asyncpg.PostgresError
    text: str
    detail: str
    hint: str
    sql: str | None


def _from_postgres(err: asyncpg.PostgresError, text: str, sql: str | None) -> ClassifiedError:
    state = err.sqlstate or ""
    position = _position_of(err)
    report = _Report(err, text, getattr(err, "detail", None) or "", getattr(err, "hint", None) or "", sql)
    builder = _BUILDERS.get(state) or _BUILDERS.get(state[:2]) or _unknown
    category, message, hint, transient = builder(report)
    if sql is not None and position is not None:
        message += "\n" + render_position(sql, position)
    return ClassifiedError(category, message, hint, state or None, transient, position)


_Built = tuple[Category, str, str, bool]
_Builder = Callable[[_Report], _Built]


def _with_detail(text: str, detail: str) -> str:
    return f"{text} ({detail})" if detail else text


def _unknown(r: _Report) -> _Built:
    return (
        Category.UNKNOWN,
        _with_detail(r.text, r.detail),
        r.hint or f"PostgreSQL error {r.err.sqlstate}; see the PostgreSQL documentation for this SQLSTATE.",
        False,
    )


def _dml_operation(sql: str | None) -> str | None:
    """The write the statement performs (INSERT, UPDATE, ...), found past any WITH clause."""
    if not sql:
        return None
    try:
        tokens = sqltext.tokenize(sql)
    except ValueError:
        return None
    words = [t.text.upper() for t in tokens if t.kind is sqltext.TokenKind.WORD]
    for word in words:
        if word in ("INSERT", "UPDATE", "DELETE", "MERGE", "COPY"):
            if word == "INSERT" and "CONFLICT" in words:
                return "INSERT ... ON CONFLICT (upsert)"
            return word
    return None


def _has_word(sql: str | None, word: str) -> bool:
    if not sql:
        return False
    try:
        return any(t.kind is sqltext.TokenKind.WORD and t.text.upper() == word for t in sqltext.tokenize(sql))
    except ValueError:
        return False


def _table_label(err: asyncpg.PostgresError, name: str | None, sql: str | None) -> str:
    """The table as the user wrote it (``app.notes``), since PostgreSQL names only the bare relation."""
    name = name or getattr(err, "table_name", None) or "?"
    schema = getattr(err, "schema_name", None)
    if schema:
        return f"{schema}.{name}"
    if sql:
        kinds = sqltext.TokenKind
        try:
            sig = [t for t in sqltext.tokenize(sql) if t.kind not in (kinds.SPACE, kinds.COMMENT)]
        except ValueError:
            return name
        for a, dot, b in zip(sig, sig[1:], sig[2:], strict=False):
            if dot.text == "." and b.text.strip('"') == name and a.kind in (kinds.WORD, kinds.IDENT):
                schema = a.text.strip('"')
                return f"{schema}.{name}"
    return name


def _privilege(r: _Report) -> _Built:
    if "row-level security" in r.text:
        table = _table_label(r.err, _quoted(r'for table "([^"]+)"', r.text), r.sql)
        op = _dml_operation(r.sql)
        what = f"the {op}" if op else "the new row"
        message = (
            f'Row-level security refused {what} on table "{table}": no policy allows this row for the current identity.'
        )
        fix = (
            f"Check the table's {op.split()[0] if op else 'INSERT/UPDATE'} policy and its WITH CHECK "
            "expression (e.g. `user_id = (select auth.uid())`), and who you are running as with "
            "`%sbwhoami`: auth.uid() is NULL unless JWT claims are set."
        )
        if _has_word(r.sql, "RETURNING") or (op and "upsert" in op):
            fix += " RETURNING and upserts also need a SELECT policy that lets you see the new row."
        return Category.RLS_VIOLATION, message, fix, False
    message = f"Permission denied: {_with_detail(r.text, r.detail)}."
    fix = (
        "The current role lacks this privilege: GRANT it (e.g. `grant select on public.t to authenticated;`, "
        "and `grant usage on schema ...`), or check who you are running as with `%sbwhoami`."
    )
    return Category.PERMISSION, message, fix, False


def _undefined_table(r: _Report) -> _Built:
    name = _quoted(r'relation "([^"]+)" does not exist', r.text) or getattr(r.err, "table_name", None)
    if name is None:
        return Category.UNDEFINED_TABLE, r.text, r.hint or "`%sbschema` lists the tables you can see.", False
    fix = (
        f"Schema-qualify it (e.g. `public.{name}`, `auth.users`, `storage.objects`) or check the "
        "search_path and spelling; `%sbschema` lists the tables you can see."
        if "." not in name
        else "Check the schema and table spelling; `%sbschema` lists the tables you can see."
    )
    if r.hint:
        fix = f"{r.hint} {fix}"
    return Category.UNDEFINED_TABLE, f'Table or view "{name}" does not exist.', fix, False


def _undefined_column(r: _Report) -> _Built:
    m = re.search(r'column "([^"]+)"(?: of relation "([^"]+)")? does not exist', r.text)
    if m is None:
        return Category.UNDEFINED_COLUMN, r.text, r.hint or "`%sbschema <table>` lists the columns.", False
    column, table = m.group(1), m.group(2)
    message = f'Column "{column}" does not exist' + (f' in table "{table}".' if table else ".")
    fix = "`%sbschema <table>` lists the columns."
    if r.sql and column == column.lower() and column not in r.sql and column in r.sql.lower():
        fix += ' Unquoted names fold to lower case: write mixed-case columns in double quotes ("userId").'
    if r.hint:
        fix = f"{r.hint} {fix}"
    return Category.UNDEFINED_COLUMN, message, fix, False


def _undefined_function(r: _Report) -> _Built:
    fix = r.hint or "Check the name and argument types."
    if "auth." in r.text:
        fix += " The auth.* helpers exist on Supabase and in the local stand-in, not in a bare PostgreSQL."
    return Category.UNDEFINED_FUNCTION, f"{r.text}.", fix, False


def _syntax(r: _Report) -> _Built:
    return (
        Category.SYNTAX,
        f"Syntax error: {r.text}",
        r.hint or "Check the SQL at the marked position.",
        False,
    )


def _parameter(r: _Report) -> _Built:
    fix = "Use :name placeholders for Python values (or $1, $2 ... with arguments, not both)."
    return Category.PARAMETER, r.text, fix, False


def _query_canceled(r: _Report) -> _Built:
    if "user request" in r.text:
        return (
            Category.CANCELLED,
            "The statement was cancelled on request.",
            "A cancelled statement's changes are rolled back; run it again when ready.",
            False,
        )
    return (
        Category.TIMEOUT,
        f"The statement ran longer than statement_timeout and was cancelled ({r.text}).",
        "Raise it for this transaction with `SET LOCAL statement_timeout = '30s'` (Supabase defaults: anon "
        "3s, authenticated 8s; `alter role authenticated set statement_timeout = '15s'` changes a role's), "
        "or make the query cheaper (an index, `(select auth.uid())` in policies).",
        False,
    )


def _lock_timeout(r: _Report) -> _Built:
    return (
        Category.TIMEOUT,
        f"Could not get a lock in time: {r.text}.",
        "Another transaction holds the rows or table; finish it, or raise lock_timeout (`SET LOCAL`).",
        False,
    )


def _idle_timeout(r: _Report) -> _Built:
    return (
        Category.TIMEOUT,
        f"The server closed a transaction left idle too long: {r.text}.",
        "Do not leave transactions open between cells; commit or roll back promptly.",
        False,
    )


def _auth(r: _Report) -> _Built:
    if "SSL" in r.text:
        fix = "This server requires SSL: connect with `sslmode=require` (asyncpg: `ssl='require'`)."
    elif r.err.sqlstate == "28P01":
        fix = (
            "Check the database password (Dashboard > Project Settings > Database, reset it there if "
            "unsure); through the pooler the user is `postgres.<project-ref>`."
        )
    else:
        fix = (
            "Check the user name (through the pooler: `postgres.<project-ref>`) and that this role may "
            "log in from here."
        )
    return Category.AUTH_FAILED, f"Authentication failed: {r.text}.", fix, False


def _prepared(r: _Report) -> _Built:
    message = (
        f"Prepared statement error: {r.text}. Through a transaction-mode pooler (Supavisor port 6543, "
        "PgBouncer) each transaction may get a different server connection, so named prepared statements "
        "go astray."
    )
    fix = (
        "Turn off asyncpg's statement cache: `connect_args={'statement_cache_size': 0}` with SQLAlchemy "
        "(`statement_cache_size=0` for asyncpg.connect), or use session mode (port 5432) or the direct host."
    )
    return Category.PREPARED_STATEMENT, message, fix, False


def _protocol(r: _Report) -> _Built:
    if "prepared statement" in r.text or "bind message" in r.text:
        return _prepared(r)
    return _connection(r)


def _connection(r: _Report) -> _Built:
    return (
        Category.CONNECTION,
        f"The database connection was lost: {r.text}.",
        "The server ended the connection (restart, pg_terminate_backend, idle timeout or a network drop); "
        "reconnecting and retrying is safe.",
        True,
    )


def _too_many(r: _Report) -> _Built:
    return (
        Category.CONNECTION,
        f"The database has no free connection slots: {r.text}.",
        "Close idle connections, or connect through the pooler (Supavisor port 6543) which shares server "
        "connections; max_connections depends on the compute size.",
        True,
    )


def _read_only(r: _Report) -> _Built:
    return (
        Category.READ_ONLY,
        f"Queries run read-only by default, so this write was refused ({r.text}).",
        "Re-run with `--write` (e.g. `%%sbquery --write`) to allow changes; on a read replica, connect to "
        "the primary instead.",
        False,
    )


def _unique(r: _Report) -> _Built:
    return (
        Category.UNIQUE_VIOLATION,
        f"Duplicate key: {_with_detail(r.text, r.detail)}.",
        "A row with this key already exists: pick another value, or use "
        "`INSERT ... ON CONFLICT (...) DO UPDATE / DO NOTHING` for an upsert.",
        False,
    )


def _foreign_key(r: _Report) -> _Built:
    if "still referenced" in r.detail or "still referenced" in r.text:
        fix = "Other rows point at this one: delete or update them first, or declare ON DELETE CASCADE."
    else:
        fix = "The referenced row does not exist: insert it first or check the id."
    return Category.FK_VIOLATION, f"Foreign key violation: {_with_detail(r.text, r.detail)}.", fix, False


def _not_null(r: _Report) -> _Built:
    column = getattr(r.err, "column_name", None) or _quoted(r'column "([^"]+)"', r.text) or "the column"
    return (
        Category.NOT_NULL,
        f"Missing value: {r.text}.",
        f"Provide a value for {column} or give it a DEFAULT (for an owner column: `default auth.uid()`).",
        False,
    )


def _check(r: _Report) -> _Built:
    name = getattr(r.err, "constraint_name", None) or _quoted(r'constraint "([^"]+)"', r.text) or "?"
    return (
        Category.CHECK_VIOLATION,
        f"Check constraint failed: {r.text}.",
        f"The row breaks {name}; see its rule with "
        f"`select pg_get_constraintdef(oid) from pg_constraint where conname = '{name}'`.",
        False,
    )


def _data(r: _Report) -> _Built:
    if r.text.startswith("invalid input for query argument"):  # asyncpg's client-side encoding check
        fix = (
            "Pass a Python value of the parameter's type (int, str, uuid.UUID, datetime ...), or cast the "
            "placeholder in SQL (`:x::text`)."
        )
    else:
        fix = r.hint or "Check the value against the column type; cast explicitly where needed (`::uuid`)."
    return Category.DATA, f"Invalid data: {_with_detail(r.text, r.detail)}.", fix, False


def _undefined_schema(r: _Report) -> _Built:
    name = _quoted(r'schema "([^"]+)" does not exist', r.text) or "?"
    fix = "Check the schema name; `%sbschema` lists the schemas you can see."
    if name in ("auth", "storage", "extensions"):
        fix += f" The {name} schema exists on Supabase and in the local stand-in, not in a bare PostgreSQL."
    return Category.UNDEFINED_TABLE, f'Schema "{name}" does not exist.', fix, False


_BUILDERS: dict[str, _Builder] = {
    "42501": _privilege,
    "42P01": _undefined_table,
    "3F000": _undefined_schema,
    "42703": _undefined_column,
    "42883": _undefined_function,
    "42601": _syntax,
    "42P02": _parameter,
    "57014": _query_canceled,
    "55P03": _lock_timeout,
    "25P03": _idle_timeout,
    "28P01": _auth,
    "28": _auth,
    "42P05": _prepared,
    "26000": _prepared,
    "08P01": _protocol,
    "08": _connection,
    "57P01": _connection,
    "57P02": _connection,
    "57P03": _connection,
    "53300": _too_many,
    "25006": _read_only,
    "23505": _unique,
    "23503": _foreign_key,
    "23502": _not_null,
    "23514": _check,
    "22": _data,
}


def _from_interface(err: asyncpg.InterfaceError, text: str) -> ClassifiedError:
    first = text.splitlines()[0] if text else type(err).__name__
    if isinstance(err, asyncpg.exceptions.DataError):
        return ClassifiedError(
            Category.DATA,
            f"A query argument has the wrong type: {first}",
            "Pass a Python value of the column's type (int, str, uuid.UUID, datetime ...), or cast the "
            "placeholder in SQL (`:x::text`).",
        )
    if "closed" in text:
        return ClassifiedError(
            Category.CONNECTION,
            f"The database connection is closed: {first}",
            "Reconnect and run it again. This statement never reached the server, but earlier statements of the "
            "same transaction may have been lost with the connection: re-run the whole unit of work, and only "
            "if it is idempotent (workbench.backend.retry does this).",
            transient=True,
        )
    if "argument" in text and "expects" in text:
        return ClassifiedError(
            Category.PARAMETER,
            first,
            "Use :name placeholders for Python values (or $1, $2 ... with matching arguments).",
        )
    return ClassifiedError(Category.UNKNOWN, f"{type(err).__name__}: {first}", "See the full traceback.")


_RETRYABLE_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT, errno.ENOENT}
)


def _from_os_error(err: OSError, text: str) -> ClassifiedError:
    detail = text or type(err).__name__
    if isinstance(err, socket.gaierror):
        return ClassifiedError(
            Category.CONNECTION,
            f"Could not resolve the database host: {detail}",
            "Check the host name. The direct host `db.<ref>.supabase.co` resolves only over IPv6; without "
            "IPv6 use the pooler host from the dashboard's Connect dialog.",
        )
    if err.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
        return ClassifiedError(
            Category.CONNECTION,
            f"The database host is unreachable from this network: {detail}",
            "The direct host `db.<ref>.supabase.co` is IPv6-only; without IPv6 use the Supavisor pooler "
            "host (session mode 5432 or transaction mode 6543).",
        )
    if "SSL" in text:
        return ClassifiedError(
            Category.CONNECTION,
            f"SSL negotiation failed: {detail}",
            "Match the server: `sslmode=require` (asyncpg: `ssl='require'`) for Supabase, or disable SSL "
            "for a local server that does not offer it.",
        )
    refused = err.errno == errno.ECONNREFUSED or "Connect call failed" in text or "refused" in text.lower()
    if refused:
        return ClassifiedError(
            Category.CONNECTION,
            f"Could not connect to the database: connection refused ({detail})",
            "Nothing is listening there: check host and port (5432 direct or session pooler, 6543 "
            "transaction pooler) and that the database is running.",
            transient=True,
        )
    transient = err.errno in _RETRYABLE_ERRNOS or isinstance(err, ConnectionError)
    return ClassifiedError(
        Category.CONNECTION,
        f"Database connection error: {detail}",
        "Check that the database is running and reachable; a dropped connection can be retried.",
        transient=transient,
    )
