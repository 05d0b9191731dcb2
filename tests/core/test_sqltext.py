"""Tests for workbench.core.sqltext: the lexer behind ``%%sbquery``'s splitting, binding and classification."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.core.sqltext import (
    BoundStatement,
    MissingParameter,
    SQLSyntaxError,
    TokenKind,
    bind_parameters,
    classify_statement,
    first_keyword,
    resolve_arguments,
    split_statements,
    tokenize,
)

# ---------------------------------------------------------------------------------------------------------
# binding

BIND_CASES: list[tuple[str, str, tuple[str, ...]]] = [
    # (input, expected sql, expected names)
    ("select :a", "select $1", ("a",)),
    ("select :a, :b, :a", "select $1, $2, $1", ("a", "b")),
    ("select x::int, :y::uuid", "select x::int, $1::uuid", ("y",)),
    ("select :_private1", "select $1", ("_private1",)),
    ("select :café", "select $1", ("café",)),
    ("select 'a :b'", "select 'a :b'", ()),
    ("select 'it''s :x', :y", "select 'it''s :x', $1", ("y",)),
    ('select "col:x" from t', 'select "col:x" from t', ()),
    ('select "a"":b" from t', 'select "a"":b" from t', ()),
    ("select $$ :x $$", "select $$ :x $$", ()),
    ("select $fn$ :x $fn$, :y", "select $fn$ :x $fn$, $1", ("y",)),
    ("select $fn$ $$ :x $$ $fn$", "select $fn$ $$ :x $$ $fn$", ()),
    ("select $a$ :x $b$ :y $a$", "select $a$ :x $b$ :y $a$", ()),
    ("-- :x\nselect :y", "-- :x\nselect $1", ("y",)),
    ("/* :x /* :z */ :w */ select :y", "/* :x /* :z */ :w */ select $1", ("y",)),
    ("select E'\\':x', :y", "select E'\\':x', $1", ("y",)),
    ("select e'a\\\\', :y", "select e'a\\\\', $1", ("y",)),
    ("select E'a'':x', :y", "select E'a'':x', $1", ("y",)),
    ("select U&'d\\0061t:a', :y", "select U&'d\\0061t:a', $1", ("y",)),
    ('select U&"c:x" from t', 'select U&"c:x" from t', ()),
    ("select B'101', X'1F', N'n:x'", "select B'101', X'1F', N'n:x'", ()),
    ("select 'a\\' , :y", "select 'a\\' , $1", ("y",)),  # backslash is literal in standard strings
    ("select f(a := 1), :b", "select f(a := 1), $1", ("b",)),
    ("do $$ begin a:=1; end $$", "do $$ begin a:=1; end $$", ()),
    ("select a:=1", "select a:=1", ()),
    ("select :1, :'x', :\"x\"", "select :1, :'x', :\"x\"", ()),
    ("select x:::y", "select x:::y", ()),
    ("select 1 LIMIT:n", "select 1 LIMIT $1", ("n",)),
    (
        "select id from t where owner = :uid and id = :id",
        "select id from t where owner = $1 and id = $2",
        ("uid", "id"),
    ),
    # array slices: a colon after an operand inside [...] is a slice separator
    ("select arr[1:2]", "select arr[1:2]", ()),
    ("select arr[lo:hi]", "select arr[lo:hi]", ()),
    ("select arr[f(x):hi]", "select arr[f(x):hi]", ()),
    ("select arr[1][2:3]", "select arr[1][2:3]", ()),
    ("select arr[: hi]", "select arr[: hi]", ()),
    # ... and a :name that opens a bound is a parameter
    ("select arr[:lo]", "select arr[$1]", ("lo",)),
    ("select arr[1: :hi]", "select arr[1: $1]", ("hi",)),
    ("select arr[:lo: :hi]", "select arr[$1: $2]", ("lo", "hi")),
    ("select arr[(:i)]", "select arr[($1)]", ("i",)),
    ("select arr[case when true then :i else 1 end]", "select arr[case when true then $1 else 1 end]", ("i",)),
    ("select $1, $2", "select $1, $2", ()),
    ("select '$1', :a", "select '$1', $1", ("a",)),
]


@pytest.mark.parametrize(("sql", "expected", "names"), BIND_CASES)
def test_bind_parameters(sql: str, expected: str, names: tuple[str, ...]) -> None:
    assert bind_parameters(sql) == BoundStatement(expected, names)


def test_bind_rejects_mixed_styles() -> None:
    with pytest.raises(ValueError, match=r"mixes \$1-style positional parameters with named parameters \(:a\)"):
        bind_parameters("select $1, :a")


def test_resolve_arguments_in_placeholder_order() -> None:
    bound = bind_parameters("select :b, :a, :b")
    assert resolve_arguments(bound, {"a": 1, "b": None, "c": 3}) == [None, 1]


def test_resolve_arguments_missing_name() -> None:
    bound = bind_parameters("select * from t where id = :user_id")
    with pytest.raises(MissingParameter) as info:
        resolve_arguments(bound, {})
    assert isinstance(info.value, ValueError)
    assert info.value.name == "user_id"
    assert "`user_id` is not defined" in str(info.value)
    assert "user_id = ..." in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# splitting

SPLIT_CASES: list[tuple[str, list[str]]] = [
    ("select 1; select 2", ["select 1", "select 2"]),
    ("  \n select 1 ;  \n", ["select 1"]),
    ("select 1", ["select 1"]),
    ("select ';'; select 2", ["select ';'", "select 2"]),
    ("select 'a'';b'; select 2", ["select 'a'';b'", "select 2"]),
    ("select E'\\';'; select 2", ["select E'\\';'", "select 2"]),
    ('select "a;b" from t; select 2', ['select "a;b" from t', "select 2"]),
    ("select $$;$$; select 2", ["select $$;$$", "select 2"]),
    ("select $fn$ ; $$ ; $fn$; select 2", ["select $fn$ ; $$ ; $fn$", "select 2"]),
    ("select 1 -- ; not a split\n; select 2", ["select 1 -- ; not a split", "select 2"]),
    ("/* ; /* ; */ ; */ select 1;", ["/* ; /* ; */ ; */ select 1"]),
    (";;  ; -- only a comment\n; /* c */", []),
    ("select 1; -- trailing comment", ["select 1"]),
    ("", []),
    (
        "do $$ begin perform 1; end $$; select 1",
        ["do $$ begin perform 1; end $$", "select 1"],
    ),
    ("begin; select 1; commit;", ["begin", "select 1", "commit"]),
    (
        "create rule r as on insert to t do also (insert into a values (1); insert into b values (2)); select 1",
        ["create rule r as on insert to t do also (insert into a values (1); insert into b values (2))", "select 1"],
    ),
    (
        "create function f() returns int language sql begin atomic select 1; select case when true then 2 end; "
        "end; select f()",
        [
            "create function f() returns int language sql begin atomic select 1; select case when true then 2 end; end",
            "select f()",
        ],
    ),
    (
        "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC insert into t values (1); END; call p()",
        ["CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC insert into t values (1); END", "call p()"],
    ),
    (
        "create function f() returns int language plpgsql as $$ begin return 1; end $$; select f()",
        ["create function f() returns int language plpgsql as $$ begin return 1; end $$", "select f()"],
    ),
]


@pytest.mark.parametrize(("sql", "expected"), SPLIT_CASES)
def test_split_statements(sql: str, expected: list[str]) -> None:
    assert split_statements(sql) == expected


UNTERMINATED: list[tuple[str, str, str]] = [
    # (sql, the text at the reported position, what the message names)
    ("select 1;\nselect 'abc", "'abc", "quoted string"),
    ('select "abc', '"abc', "quoted identifier"),
    ("select E'abc\\'", "E'abc", "quoted string"),
    ("select U&'abc", "U&'abc", "quoted string"),
    ("select $$ abc", "$$ abc", "dollar-quoted string $$"),
    ("select $a$ abc $b$", "$a$ abc", "dollar-quoted string $a$"),
    ("select /* abc /* */", "/* abc", "/* comment"),
]


@pytest.mark.parametrize(("sql", "at", "what"), UNTERMINATED)
def test_unterminated_constructs_raise_with_position(sql: str, at: str, what: str) -> None:
    with pytest.raises(SQLSyntaxError) as info:
        split_statements(sql)
    err = info.value
    assert isinstance(err, ValueError)
    assert sql[err.position :].startswith(at)
    assert f"unterminated {what}" in str(err)
    assert f"line {err.line}, column {err.column}" in str(err)
    assert err.line == sql.count("\n", 0, err.position) + 1


@pytest.mark.parametrize("end", ["\n", "\r", "\r\n"])
def test_a_line_comment_ends_where_postgresql_ends_it(end: str) -> None:
    """PostgreSQL ends a ``--`` comment at a carriage return too: text after it is code, and a splitter that
    read it as comment would hide a ``commit`` from the friendly early checks."""
    assert split_statements(f"select 1 -- c{end}; commit") == ["select 1 -- c", "commit"]
    assert first_keyword(f"-- c{end}commit") == "COMMIT"


def test_unterminated_line_comment_is_fine() -> None:
    assert split_statements("select 1 -- no newline") == ["select 1 -- no newline"]


# ---------------------------------------------------------------------------------------------------------
# keywords and classification


@pytest.mark.parametrize(
    ("sql", "keyword"),
    [
        ("select 1", "SELECT"),
        ("  -- c\n /* x /* y */ */ (( select 1))", "SELECT"),
        ("with x as (select 1) select * from x", "WITH"),
        ("(values (1))", "VALUES"),
        ("", ""),
        ("-- nothing", ""),
        ("'str'", ""),
    ],
)
def test_first_keyword(sql: str, keyword: str) -> None:
    assert first_keyword(sql) == keyword


CLASSIFY_CASES: list[tuple[str, str]] = [
    ("select 1", "query"),
    ("(select 1) union (select 2)", "query"),
    ("with x as (insert into t values (1) returning id) select * from x", "query"),
    ("with x as (select 1) insert into t select * from x", "query"),
    ("values (1), (2)", "query"),
    ("table t", "query"),
    ("show search_path", "query"),
    ("explain analyze select 1", "query"),
    ("insert into t values (1) returning id", "query"),
    ("update t set a = 1 where id = 2 returning *", "query"),
    ("delete from t returning id", "query"),
    ("select 1 into newtable", "command"),
    ("insert into t values (1)", "command"),
    ("insert into t select 'returning'", "command"),
    ("insert into t (select returning from x)", "command"),
    ("create table t (id int)", "command"),
    ("do $$ begin commit; end $$", "command"),
    ("set local role authenticated", "command"),
    ("SET LOCAL statement_timeout = '5s'", "command"),
    ("set constraints all deferred", "command"),
    ("select set_config('role', 'anon', true)", "query"),
    ("begin", "transaction_control"),
    ("BEGIN ISOLATION LEVEL SERIALIZABLE", "transaction_control"),
    ("start transaction", "transaction_control"),
    ("commit", "transaction_control"),
    ("end", "transaction_control"),
    ("rollback", "transaction_control"),
    ("rollback to savepoint s", "command"),  # stays inside the cell's transaction
    ("rollback work to s", "command"),
    ("rollback and chain", "transaction_control"),
    ("abort", "transaction_control"),
    ("prepare transaction 'x'", "transaction_control"),
    ("commit prepared 'x'", "transaction_control"),
    ("rollback prepared 'x'", "transaction_control"),
    ("set transaction read only", "transaction_control"),
    ("set session characteristics as transaction read only", "transaction_control"),
    ("set role authenticated", "session_identity"),
    ("set session role authenticated", "session_identity"),
    ("reset role", "session_identity"),
    ("set session authorization postgres", "session_identity"),
    ("reset session authorization", "session_identity"),
    ("reset all", "session_identity"),
    ("discard all", "session_identity"),
    ("set search_path = app, public", "session_identity"),
    ("set session statement_timeout = 0", "session_identity"),
    ("set time zone 'UTC'", "session_identity"),
    ("reset statement_timeout", "session_identity"),
    ("/* lead */ -- c\n SET role anon", "session_identity"),
    ("prepare q as select 1", "command"),
]


@pytest.mark.parametrize(("sql", "kind"), CLASSIFY_CASES)
def test_classify_statement(sql: str, kind: str) -> None:
    assert classify_statement(sql) == kind


# ---------------------------------------------------------------------------------------------------------
# properties

_SIGNIFICANT_FRAGMENTS = [
    "select",
    "x",
    "t.id",
    "1",
    "2.5",
    "(",
    ")",
    ",",
    "=",
    "x::int",
    "'a;b'",
    "'it''s; :x'",
    "E'\\'; :x'",
    '"col;x"',
    "$$ ; :x $$",
    "$fn$ ; $$ $fn$",
    "arr[1:2]",
    ":name",
    "a := 1",
    "begin",
    "case",
    "end",
    "create function f() returns int language sql",
]
_TRIVIA_FRAGMENTS = [" ", "\n", "\t", "-- c ; :x\n", "/* ; /* :x */ */"]


def _sig(sql: str) -> list[str]:
    return [t.text for t in tokenize(sql) if t.kind not in (TokenKind.SPACE, TokenKind.COMMENT)]


@st.composite
def sql_scripts(draw: st.DrawFn) -> str:
    pieces = draw(
        st.lists(
            st.one_of(
                st.sampled_from(_SIGNIFICANT_FRAGMENTS),
                st.sampled_from(_TRIVIA_FRAGMENTS),
                st.just(";"),
            ),
            max_size=40,
        )
    )
    # a space between pieces keeps each fragment one token run (no accidental '' or $$ merges)
    return " ".join(pieces)


@settings(max_examples=500)
@given(sql_scripts())
def test_split_then_join_preserves_tokens(sql: str) -> None:
    parts = split_statements(sql)
    joined = "\n;".join(parts)  # the newline ends a trailing -- comment before the separator
    # every token but whitespace, comments and the separating semicolons survives, in order (semicolons
    # inside parentheses or BEGIN ATOMIC stay in their part; comment-only statements are dropped)
    assert [t for t in _sig(joined) if t != ";"] == [t for t in _sig(sql) if t != ";"]
    inner = sum(_sig(part).count(";") for part in parts)
    assert _sig(joined).count(";") == inner + max(0, len(parts) - 1)
    assert split_statements(joined) == parts
    for part in parts:
        assert part == part.strip(" \t\n\r\f\v")
        assert _sig(part)


_LITERAL_CHUNKS = [
    "'a :x b'",
    "'it''s :x'",
    "E'\\':x'",
    "E'a\\\\'",
    '"col:x"',
    '"a"":x"',
    "$$ :x $$",
    "$fn$ :x $$ :y $fn$",
    "-- :x ; :y\n",
    "/* :x /* :y */ */",
    "x::int",
    "a := 1",
    "arr[1:2]",
    "arr[lo:hi]",
    "U&':x'",
    "42",
]
_SEPARATORS = [" ", "\n", " = ", ", ", " + ", "(", ")"]
_NAMES = ["a", "b", "user_id", "x", "Name2"]


@st.composite
def placeholder_mixes(draw: st.DrawFn) -> tuple[str, str, tuple[str, ...]]:
    chunks = draw(
        st.lists(
            st.one_of(
                st.sampled_from(_LITERAL_CHUNKS).map(lambda c: ("lit", c)),
                st.sampled_from(_NAMES).map(lambda n: ("param", n)),
            ),
            max_size=30,
        )
    )
    seps = draw(st.lists(st.sampled_from(_SEPARATORS), min_size=len(chunks) + 1, max_size=len(chunks) + 1))
    numbers: dict[str, int] = {}
    source, expected = [seps[0]], [seps[0]]
    for (kind, text), sep in zip(chunks, seps[1:], strict=True):
        if kind == "param":
            number = numbers.setdefault(text, len(numbers) + 1)
            source.append(f":{text}")
            expected.append(f"${number}")
        else:
            source.append(text)
            expected.append(text)
        source.append(sep)
        expected.append(sep)
    return "select " + "".join(source), "select " + "".join(expected), tuple(numbers)


@settings(max_examples=500)
@given(placeholder_mixes())
def test_only_real_placeholders_are_bound(case: tuple[str, str, tuple[str, ...]]) -> None:
    source, expected, names = case
    bound = bind_parameters(source)
    assert bound.sql == expected
    assert bound.names == names
    assert resolve_arguments(bound, {n: n.upper() for n in _NAMES}) == [n.upper() for n in names]


_SQLISH = st.text(
    alphabet=st.one_of(st.sampled_from(list("'\"$:;-/*()[]EeUu&\\ \n\tab1_x=.,")), st.characters()),
    max_size=60,
)


@settings(max_examples=1000)
@given(_SQLISH)
def test_lexer_never_raises_except_unterminated(sql: str) -> None:
    try:
        tokens = tokenize(sql)
    except SQLSyntaxError as err:
        assert 0 <= err.position < len(sql)
        assert sql[err.position] in "'\"$/EeUuBbXxNn"
        assert str(err).startswith("unterminated ")
        return
    assert "".join(t.text for t in tokens) == sql
    assert all(t.text for t in tokens)
    assert all(sql[t.start : t.end] == t.text for t in tokens)
    # the derived helpers never raise on lexable text (mixed param styles are a ValueError by design)
    split_statements(sql)
    first_keyword(sql)
    assert classify_statement(sql) in {"query", "transaction_control", "session_identity", "command"}
    try:
        bind_parameters(sql)
    except ValueError as err:
        assert "mixes $1-style" in str(err)
