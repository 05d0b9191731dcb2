"""Pure SQL-text helpers for the ``%%sbquery`` magic: split a cell, bind ``:name`` params, classify.

One small hand-written lexer, because the magic must never touch text inside strings, quoted identifiers,
comments or dollar-quoted bodies, and a regex cannot follow nested ``/* /* */ */`` or ``$tag$`` bodies.
It assumes ``standard_conforming_strings = on`` (the default since PostgreSQL 9.1): a backslash is an
ordinary character in ``'...'`` and only escapes in ``E'...'``. A cell can change that setting, so the
splitter may be wrong about where a statement ends; that is harmless because the query layer sends each
piece in its own Parse message, where PostgreSQL refuses a second command.

Array slices: inside ``[...]`` a colon that follows an operand (a name, number, literal, ``)`` or ``]``)
is a slice separator, so ``arr[1:2]`` and ``arr[lo:hi]`` are left alone (``hi`` is a column there). A
``:name`` that opens a bound (right after ``[`` or after another colon) is a parameter: ``arr[:lo]``,
``arr[1: :hi]``. To write a slice with an omitted lower bound over a column, put a space after the
colon: ``arr[: hi]``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from workbench.core.exceptions import WorkbenchUserError

__all__ = [
    "BoundStatement",
    "MissingParameter",
    "SQLSyntaxError",
    "Token",
    "TokenKind",
    "bind_parameters",
    "classify_statement",
    "first_keyword",
    "resolve_arguments",
    "split_statements",
    "tokenize",
]

# PostgreSQL's whitespace set; anything at or above U+0080 is an identifier character to its scanner.
WHITESPACE = " \t\n\r\f\v"
_SPACE = re.compile(r"[ \t\n\r\f\v]+")
_WORD = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_NUMBER = re.compile(r"(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?")
_PARAM = re.compile(r"\$[0-9]+")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
_PY_NAME = re.compile(r"[^\W\d]\w*")
_LINE_END = re.compile(r"[\n\r]")


class TokenKind(enum.StrEnum):
    SPACE = "space"
    COMMENT = "comment"
    STRING = "string"  # '...', E'...', U&'...', B'...', X'...', N'...'
    IDENT = "ident"  # "quoted identifier", U&"..."
    DOLLAR = "dollar"  # $tag$ ... $tag$
    PARAM = "param"  # $1
    WORD = "word"  # keyword or bare identifier
    NUMBER = "number"
    CAST = "cast"  # ::
    OP = "op"  # any other single character, and :=


_TRIVIA = (TokenKind.SPACE, TokenKind.COMMENT)


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


class SQLSyntaxError(WorkbenchUserError, ValueError):
    """Unterminated string, identifier, comment or dollar body: the cell cannot be split safely."""

    def __init__(self, what: str, sql: str, position: int) -> None:
        self.position = position  # 0-based offset of the construct's opening character
        self.line = sql.count("\n", 0, position) + 1
        self.column = position - (sql.rfind("\n", 0, position) + 1) + 1
        super().__init__(f"unterminated {what} starting at line {self.line}, column {self.column}")


def tokenize(sql: str) -> list[Token]:
    """Split ``sql`` into tokens whose texts concatenate back to ``sql`` exactly."""
    return list(_scan(sql))


def _scan(sql: str) -> Iterator[Token]:
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        kind = TokenKind.OP
        end = i + 1
        if c in WHITESPACE:
            m = _SPACE.match(sql, i)
            assert m is not None
            kind, end = TokenKind.SPACE, m.end()
        elif sql.startswith("--", i):
            m = _LINE_END.search(sql, i)  # PostgreSQL ends a -- comment at \n or \r
            kind, end = TokenKind.COMMENT, n if m is None else m.start()
        elif sql.startswith("/*", i):
            kind, end = TokenKind.COMMENT, _block_comment_end(sql, i)
        elif c == "'":
            kind, end = TokenKind.STRING, _quoted_end(sql, i + 1, "'", "quoted string", i)
        elif c == '"':
            kind, end = TokenKind.IDENT, _quoted_end(sql, i + 1, '"', "quoted identifier", i)
        elif c == "$":
            if m := _PARAM.match(sql, i):
                kind, end = TokenKind.PARAM, m.end()
            elif m := _DOLLAR_TAG.match(sql, i):
                close = sql.find(m.group(), m.end())
                if close < 0:
                    raise SQLSyntaxError(f"dollar-quoted string {m.group()}", sql, i)
                kind, end = TokenKind.DOLLAR, close + len(m.group())
        elif c == ":":
            nxt = sql[i + 1 : i + 2]
            if nxt == ":":
                kind, end = TokenKind.CAST, i + 2
            elif nxt == "=":
                end = i + 2
        elif m := _NUMBER.match(sql, i):
            kind, end = TokenKind.NUMBER, m.end()
        elif m := _WORD.match(sql, i):
            kind, end = TokenKind.WORD, m.end()
            word = m.group()
            after = sql[end : end + 2]
            if word in ("E", "e") and after[:1] == "'":
                kind, end = TokenKind.STRING, _e_string_end(sql, end + 1, i)
            elif word in ("U", "u") and after in ("&'", '&"'):
                quote = after[1]
                what = "quoted string" if quote == "'" else "quoted identifier"
                kind = TokenKind.STRING if quote == "'" else TokenKind.IDENT
                end = _quoted_end(sql, end + 2, quote, what, i)
            elif word in ("B", "b", "X", "x", "N", "n") and after[:1] == "'":
                kind, end = TokenKind.STRING, _quoted_end(sql, end + 1, "'", "quoted string", i)
        yield Token(kind, sql[i:end], i)
        i = end


def _block_comment_end(sql: str, start: int) -> int:
    depth, j, n = 1, start + 2, len(sql)
    while j < n:
        if sql.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif sql.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    raise SQLSyntaxError("/* comment", sql, start)


def _quoted_end(sql: str, j: int, quote: str, what: str, start: int) -> int:
    """End of a quoted run where a doubled quote is the only escape."""
    n = len(sql)
    while True:
        k = sql.find(quote, j)
        if k < 0:
            raise SQLSyntaxError(what, sql, start)
        if k + 1 < n and sql[k + 1] == quote:
            j = k + 2
            continue
        return k + 1


def _e_string_end(sql: str, j: int, start: int) -> int:
    """End of an ``E'...'`` string, where a backslash escapes the next character."""
    n = len(sql)
    while j < n:
        ch = sql[j]
        if ch == "\\":
            j += 2
        elif ch == "'":
            if j + 1 < n and sql[j + 1] == "'":
                j += 2
            else:
                return j + 1
        else:
            j += 1
    raise SQLSyntaxError("quoted string", sql, start)


def _significant(tokens: list[Token]) -> list[Token]:
    return [t for t in tokens if t.kind not in _TRIVIA]


# ---------------------------------------------------------------------------------------------------------
# splitting


def split_statements(sql: str) -> list[str]:
    """Split a cell on top-level ``;`` the way psql does (not inside parentheses or ``BEGIN ATOMIC``).

    Each statement keeps its own text, comments included, stripped of surrounding whitespace; statements
    made only of whitespace and comments are dropped.
    """
    statements: list[str] = []
    start = 0
    has_content = False
    paren = 0
    atomic = 0
    head: list[str] = []  # the first words, to spot CREATE [OR REPLACE] FUNCTION/PROCEDURE
    for tok in tokenize(sql):
        if tok.kind in _TRIVIA:
            continue
        if tok.kind is TokenKind.OP and tok.text == ";" and paren == 0 and atomic == 0:
            if has_content:
                statements.append(sql[start : tok.start].strip(WHITESPACE))
            start, has_content, head = tok.end, False, []
            continue
        has_content = True
        if tok.kind is TokenKind.OP:
            if tok.text == "(":
                paren += 1
            elif tok.text == ")" and paren > 0:
                paren -= 1
        elif tok.kind is TokenKind.WORD:
            word = tok.text.lower()
            if len(head) < 4:
                head.append(word)
            if paren == 0 and _creates_routine(head):
                if word == "begin" or (word == "case" and atomic > 0):
                    atomic += 1
                elif word == "end" and atomic > 0:
                    atomic -= 1
    if has_content:
        statements.append(sql[start:].strip(WHITESPACE))
    return statements


def _creates_routine(head: list[str]) -> bool:
    routine = ("function", "procedure")
    if len(head) < 2 or head[0] != "create":
        return False
    if head[1] in routine:
        return True
    return len(head) >= 4 and head[1] == "or" and head[2] == "replace" and head[3] in routine


# ---------------------------------------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class BoundStatement:
    """A statement rewritten to ``$n`` placeholders; ``names[k]`` feeds ``$k+1``."""

    sql: str
    names: tuple[str, ...]


class MissingParameter(WorkbenchUserError, ValueError):
    """A ``:name`` in the SQL has no Python variable to take its value from."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"SQL parameter :{name} has no value: the Python variable `{name}` is not defined. "
            f"Define it in an earlier cell (`{name} = ...`) and run the query again; "
            "a literal colon belongs inside a quoted string, and casts use `::`."
        )


# Words after which a colon inside [...] still opens a bound rather than separating a slice.
_NOT_OPERANDS = frozenset(
    {"AND", "OR", "NOT", "CASE", "WHEN", "THEN", "ELSE", "IS", "IN", "LIKE", "ILIKE", "BETWEEN", "ARRAY"}
)
_OPERAND_KINDS = (TokenKind.STRING, TokenKind.IDENT, TokenKind.DOLLAR, TokenKind.PARAM, TokenKind.NUMBER)


def _is_operand(tok: Token | None) -> bool:
    if tok is None:
        return False
    if tok.kind is TokenKind.WORD:
        return tok.text.upper() not in _NOT_OPERANDS
    return tok.kind in _OPERAND_KINDS or (tok.kind is TokenKind.OP and tok.text in (")", "]"))


def _is_ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$" or ch >= "\u0080"


def bind_parameters(stmt: str) -> BoundStatement:
    """Rewrite ``:name`` placeholders to ``$1, $2, ...`` (a repeated name reuses its number).

    Only bare identifier names count; ``::`` casts, ``:=``, and colons inside strings, quoted
    identifiers, comments and dollar bodies are left alone, as are array-slice colons (module docstring).
    """
    tokens = tokenize(stmt)
    numbers: dict[str, int] = {}
    out: list[str] = []
    brackets: list[str] = []
    prev: Token | None = None  # previous significant token
    has_positional = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if (
            tok.kind is TokenKind.OP
            and tok.text == ":"
            and nxt is not None
            and nxt.kind is TokenKind.WORD
            and _PY_NAME.fullmatch(nxt.text)
            and not (tok.start > 0 and stmt[tok.start - 1] == ":")
            and not (brackets and brackets[-1] == "[" and _is_operand(prev))
        ):
            name = nxt.text
            number = numbers.setdefault(name, len(numbers) + 1)
            space = " " if tok.start > 0 and _is_ident_char(stmt[tok.start - 1]) else ""
            out.append(f"{space}${number}")
            prev = Token(TokenKind.PARAM, f"${number}", tok.start)
            i += 2
            continue
        if tok.kind is TokenKind.PARAM:
            has_positional = True
        elif tok.kind is TokenKind.OP and tok.text in "([":
            brackets.append(tok.text)
        elif tok.kind is TokenKind.OP and tok.text in ")]" and brackets:
            brackets.pop()
        if tok.kind not in _TRIVIA:
            prev = tok
        out.append(tok.text)
        i += 1
    if has_positional and numbers:
        named = ", ".join(f":{name}" for name in numbers)
        raise ValueError(
            f"the statement mixes $1-style positional parameters with named parameters ({named}); "
            "use one style: either :name placeholders filled from Python variables, or $n throughout"
        )
    return BoundStatement("".join(out), tuple(numbers))


def resolve_arguments(bound: BoundStatement, namespace: Mapping[str, object]) -> list[object]:
    """The values for ``bound``'s placeholders, in ``$n`` order, looked up by name in ``namespace``."""
    args: list[object] = []
    for name in bound.names:
        if name not in namespace:
            raise MissingParameter(name)
        args.append(namespace[name])
    return args


# ---------------------------------------------------------------------------------------------------------
# classification


def first_keyword(stmt: str) -> str:
    """The statement's first word, upper-cased, past comments, whitespace and opening parentheses."""
    for tok in tokenize(stmt):
        if tok.kind in _TRIVIA or (tok.kind is TokenKind.OP and tok.text == "("):
            continue
        return tok.text.upper() if tok.kind is TokenKind.WORD else ""
    return ""


_QUERY_WORDS = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN", "FETCH"})
_TRANSACTION_WORDS = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"})


def classify_statement(stmt: str) -> str:
    """One of ``query``, ``transaction_control``, ``session_identity`` or ``command``.

    The magic runs each cell in its own transaction, possibly through a transaction pooler, and refuses
    early, with a helpful message, statements that would end that transaction or change session state.
    This is a convenience, not the safety boundary: every statement reaches the server alone (extended
    protocol), the server's transaction status is checked after each one, and the session is reset when
    the cell ends (see ``workbench.core.query``). ``SET LOCAL`` is transaction-scoped: a plain command.
    """
    sig = _significant(tokenize(stmt))
    while sig and sig[0].kind is TokenKind.OP and sig[0].text == "(":
        sig.pop(0)
    words = [t.text.upper() if t.kind is TokenKind.WORD else "" for t in sig[:3]]
    words += [""] * (3 - len(words))
    kw, second, third = words
    if kw == "ROLLBACK" and (second == "TO" or (second in ("WORK", "TRANSACTION") and third == "TO")):
        return "command"  # ROLLBACK TO SAVEPOINT stays inside the cell's transaction
    if kw in _TRANSACTION_WORDS:
        return "transaction_control"
    if kw == "PREPARE" and second == "TRANSACTION":
        return "transaction_control"
    if kw == "SET":
        if second == "TRANSACTION" or (second == "SESSION" and third == "CHARACTERISTICS"):
            return "transaction_control"
        if second in ("LOCAL", "CONSTRAINTS"):
            return "command"
        return "session_identity"
    if kw in ("RESET", "DISCARD"):
        return "session_identity"
    top = _top_level_words(sig)
    if kw == "SELECT" and "INTO" in top:
        return "command"  # SELECT ... INTO new_table creates a table and returns no rows
    if kw in _QUERY_WORDS or "RETURNING" in top:
        return "query"
    return "command"


def _top_level_words(sig: list[Token]) -> set[str]:
    depth = 0
    words: set[str] = set()
    for tok in sig:
        if tok.kind is TokenKind.OP and tok.text in "([":
            depth += 1
        elif tok.kind is TokenKind.OP and tok.text in ")]":
            depth = max(0, depth - 1)
        elif tok.kind is TokenKind.WORD and depth == 0:
            words.add(tok.text.upper())
    return words
