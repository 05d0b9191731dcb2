"""Bad input, clear error, nothing lost: malformed SQL, invalid claims, unknown users and roles, wrong passwords,
wrong pooler URLs, expired and mangled tokens, results larger than memory, odd storage names, path traversal,
huge uploads. Each gets one of the documented error types with a message that says what to do, and the data
is unchanged afterwards. Property-based tests (hypothesis) check that token verification, storage paths and
the magic's argument and parameter parsing never raise anything but their documented errors."""

from __future__ import annotations

import contextlib
import json
import os
import string
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import jwt
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from reliability.checks import snapshot
from reliability.figures import Figures
from workbench.backend.tokens import (
    TokenError,
    TokenVerifier,
    access_token_claims,
    api_key_claims,
    generate_es256_key,
    mint,
)
from workbench.core.errors import Category, WorkbenchError
from workbench.core.identity import IdentityError, parse_claims
from workbench.core.query import QueryUsageError
from workbench.core.settings import Settings, SettingsError
from workbench.core.sqltext import BoundStatement, MissingParameter, SQLSyntaxError, bind_parameters, split_statements
from workbench.local.standin import LocalStandIn
from workbench.local.storage_api import StorageApiError, check_key
from workbench.notebook.magics import split_line_magic

ALICE = "11111111-1111-4111-8111-111111111111"
REFUSED = (WorkbenchError, QueryUsageError, IdentityError, SQLSyntaxError, MissingParameter, UsageError)
QUICK = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


async def _snapshot(dsn: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await snapshot(conn)
    finally:
        await conn.close()


def _clear(exc: BaseException) -> str:
    """The error as the user sees it: one message, no traceback from inside the libraries."""
    text = str(exc)
    assert text.strip(), f"{type(exc).__name__} has no message"
    assert "Traceback" not in text and "asyncpg." not in text and "sqlalchemy." not in text, text
    return text


# ------------------------------------------------------------------------------- SQL, claims, users, roles


MALFORMED_SQL = [
    "selec 1",
    "select (1",
    "select 'unterminated",
    'select "unterminated',
    "select $$ never closed",
    "select 1 /* never closed",
    "select 1,,2",
    "select * from",
    "select 1 from public.tasks where",
    "-- only a comment",
    "  ;  ;  ",
    "select E'\\",
    "select 'nul \x00 byte'",
    "select 1; selec 2",
    "select * from public.no_such_table",
    "select no_such_column from public.tasks",
    "select public.no_such_function()",
    "select 1/0",
    "select 'x'::int",
    "select $1",
    "select :not_defined_anywhere_rel",
    "select :a, $1",
    "\ufeffselect 1 ü",
]


def test_malformed_sql_gets_a_clear_error_and_changes_nothing(ip, standin: LocalStandIn, figures: Figures) -> None:  # type: ignore[no-untyped-def]
    from workbench.notebook.bridge import run_sync

    before = run_sync(_snapshot(standin.dsn()))
    tried = 0
    for sql in MALFORMED_SQL:
        for options in ("", "--write --as alice@example.com"):
            with pytest.raises(REFUSED) as info:
                ip.run_cell_magic("sbquery", options, sql)
            _clear(info.value)
            tried += 1
    with pytest.raises(WorkbenchError) as syntax:
        ip.run_cell_magic("sbquery", "", "select 1,\n  2 frm public.tasks")
    assert syntax.value.category is Category.SYNTAX and "LINE 2" in str(syntax.value) and "^" in str(syntax.value)
    assert before.differences(run_sync(_snapshot(standin.dsn()))) == []
    figures.add("bad_input", "malformed_sql", tried + 1)


BAD_IDENTITIES = [
    ("--as nobody@example.com", IdentityError, "No user with email"),
    (f"--as {uuid.uuid4()}", IdentityError, "No user with id"),
    ('--as "\'; drop table public.tasks; --"', IdentityError, "No user"),
    ("--role nonesuch", IdentityError, "does not exist"),
    ("--role 'bad name'", IdentityError, "does not exist in this database. Roles you can use: anon"),
    ('--role "x; drop table y"', IdentityError, "does not exist in this database"),
    ("--claims '{oops'", IdentityError, "not valid JSON"),
    ("--claims '[1, 2]'", IdentityError, "must be a JSON object"),
    ("--claims '\"text\"'", IdentityError, "must be a JSON object"),
    ("--claims 'null'", IdentityError, "must be a JSON object"),
    ("--claims", UsageError, "expected one argument"),
    ("--limit -5", QueryUsageError, "--limit must be >= 0"),
    ("--limit many", UsageError, "invalid int value"),
    ("--no-such-option", UsageError, "unrecognized arguments"),
    ("--as", UsageError, "expected one argument"),
]


@pytest.mark.parametrize(("options", "error", "message"), BAD_IDENTITIES)
def test_unknown_users_roles_and_invalid_claims(ip, options: str, error: type, message: str, figures: Figures) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message) as info:
        ip.run_cell_magic("sbquery", options, "select count(*) from public.tasks")
    _clear(info.value)
    figures.add("bad_input", "identities_and_options")


def test_claims_that_are_valid_json_but_strange_still_run_as_asked(ip) -> None:  # type: ignore[no-untyped-def]
    """Odd but well-formed claims are the user's business: they reach auth.jwt() unchanged, and a ``role`` claim
    decides the database role, as the JWT's role does for PostgREST."""
    df = ip.run_cell_magic(
        "sbquery",
        '--as alice@example.com --claims \'{"nested": {"a": [1, null, "\\u00e9"]}, "user_role": 7}\'',
        "select current_user as r, auth.jwt() -> 'nested' as n, auth.uid()::text as u, count(*) as tasks "
        "from public.tasks",
    )
    assert (df["r"][0], df["n"][0], df["u"][0], df["tasks"][0]) == ("authenticated", {"a": [1, None, "é"]}, ALICE, 3)
    as_service = ip.run_cell_magic(
        "sbquery",
        '--as alice@example.com --claims \'{"role": "service_role"}\'',
        "select current_user as r, auth.uid()::text as u, count(*) as tasks from public.tasks",
    )
    assert (as_service["r"][0], as_service["u"][0], as_service["tasks"][0]) == ("service_role", ALICE, 7)


def test_a_role_claim_shows_in_what_the_user_is_told(ip) -> None:  # type: ignore[no-untyped-def]
    df = ip.run_cell_magic(
        "sbquery", '--as alice@example.com --claims \'{"role": "service_role"}\'', "select current_user as r"
    )
    assert df["r"][0] == "service_role"
    assert "service_role" in df.wb_footer, df.wb_footer


# ------------------------------------------------------------------------------------------ wrong passwords


def test_wrong_passwords_get_supabase_errors_and_change_nothing(own_standin: LocalStandIn, figures: Figures) -> None:
    from workbench.notebook.bridge import run_sync

    url = f"{own_standin.api_url()}/auth/v1/token?grant_type=password"
    headers = {"apikey": own_standin.keys().anon_key}
    before = run_sync(_snapshot(own_standin.dsn()))
    attempts: list[dict[str, Any]] = [
        {"email": "alice@example.com", "password": "wrong"},
        {"email": "alice@example.com", "password": ""},
        {"email": "alice@example.com", "password": "x" * 100_000},
        {"email": "alice@example.com", "password": "nul\x00byte"},
        {"email": "alice@example.com", "password": "ünïcødé 🔑"},
        {"email": "ALICE@EXAMPLE.COM", "password": "also wrong"},
        {"email": "nobody@example.com", "password": "alice-demo-password"},
        {"email": "", "password": "x"},
        {"email": "not an email", "password": "x"},
        {"email": "alice@example.com"},
        {"password": "x"},
        {"email": ["alice@example.com"], "password": "x"},
        {"email": "alice@example.com", "password": 12345},
    ]
    with httpx.Client(timeout=30) as http:
        for body in attempts:
            res = http.post(url, headers=headers, json=body)
            assert res.status_code in (400, 422), (body, res.status_code, res.text[:200])
            answer = res.json()
            assert answer.get("error_code") or answer.get("error") or answer.get("code"), answer
            assert answer.get("msg") or answer.get("message") or answer.get("error_description"), answer
            assert "Traceback" not in res.text
        garbage = http.post(url, headers=headers | {"content-type": "application/json"}, content=b"\xff{not json")
        assert garbage.status_code in (400, 422) and "Traceback" not in garbage.text
        ok = http.post(url, headers=headers, json={"email": "alice@example.com", "password": "alice-demo-password"})
        assert ok.status_code == 200 and ok.json()["user"]["id"] == ALICE
    after = run_sync(_snapshot(own_standin.dsn()))
    changed = [d for d in before.differences(after) if "auth." not in d]
    assert changed == []  # only the successful sign-in may touch auth tables (sessions, last_sign_in_at)
    figures.add("bad_input", "wrong_passwords", len(attempts) + 1)


# ------------------------------------------------------------------------------------------- pooler URLs


BAD_URLS = [
    ("postgresql://postgres:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres", "postgres.<project-ref>"),
    pytest.param(
        "postgresql://postgres.:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
        "project-ref",
        id="empty-ref",
    ),
    pytest.param(
        "postgresql://.abcdefghijklmnopqrst:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
        "project-ref",
        id="empty-user",
    ),
    ("postgresql://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:6544/postgres", "not a Supavisor port"),
    ("postgresql://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:port/postgres", "not a number"),
    ("mysql://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres", "not a PostgreSQL URL"),
    ("https://abcdefghijklmnopqrst.supabase.co", "not a PostgreSQL URL"),
    ("postgresql://", "not a PostgreSQL URL"),
    ("", "not a PostgreSQL URL"),
]


@pytest.mark.parametrize(("url", "message"), BAD_URLS)
def test_wrong_pooler_urls_are_refused_saying_how_to_fix_them(url: str, message: str, figures: Figures) -> None:
    figures.add("bad_input", "pooler_urls")
    with pytest.raises(SettingsError) as info:
        Settings(db_url=url)
    text = _clear(info.value)
    assert "SUPABASE_DB_URL" in text and "Fix:" in text and message in text, text
    assert ":pw@" not in text


BAD_PARTS: list[tuple[dict[str, Any], str]] = [
    ({"project_ref": "abcdefghijklmnopqrst"}, "SUPABASE_DB_PASSWORD"),
    ({"project_ref": "Not A Ref!", "db_password": "pw"}, "SUPABASE_PROJECT_REF"),
    ({"project_ref": "abcdefghijklmnopqrst", "db_password": "pw", "db_mode": "transaction"}, "SUPABASE_POOLER_HOST"),
    (
        {
            "project_ref": "abcdefghijklmnopqrst",
            "db_password": "pw",
            "pooler_host": "https://aws-0-x.pooler.supabase.com/",
        },
        "bare host name",
    ),
    ({"project_ref": "abcdefghijklmnopqrst", "db_password": "pw", "db_mode": "sideways"}, "SUPABASE_DB_MODE"),
    (
        {
            "db_url": "postgresql://postgres:pw@db.abcdefghijklmnopqrst.supabase.co:5432/postgres",
            "db_mode": "transaction",
        },
        "direct",
    ),
    (
        {"db_url": "postgresql://postgres.ref:pw@aws-0-x.pooler.supabase.com:6543/postgres", "db_mode": "session"},
        "port 5432",
    ),
    ({"url": "ftp://abcdefghijklmnopqrst.supabase.co"}, "SUPABASE_URL"),
    ({"statement_timeout_ms": -1}, "SUPABASE_STATEMENT_TIMEOUT_MS"),
]


@pytest.mark.parametrize(("values", "message"), BAD_PARTS)
def test_wrong_settings_name_the_variable_and_the_fix(values: dict[str, Any], message: str, figures: Figures) -> None:
    figures.add("bad_input", "settings")
    with pytest.raises(SettingsError) as info:
        Settings(**values)
    text = _clear(info.value)
    assert message in text, text
    assert "pw@" not in text and "'pw'" not in text


# --------------------------------------------------------------------------------------------- tokens


SECRET = "a-jwt-secret-for-the-reliability-suite-0123456789"
ISSUER = "http://127.0.0.1:9/auth/v1"
NOW = 1_800_000_000


def _verifier(**overrides: Any) -> TokenVerifier:
    return TokenVerifier(jwt_secret=SECRET, issuer=ISSUER, now=lambda: NOW, leeway=30, **overrides)


def _claims(**changes: Any) -> dict[str, Any]:
    return access_token_claims(ALICE, email="alice@example.com", iss=ISSUER, now=NOW) | changes


def test_expired_and_mangled_tokens_get_typed_reasons(figures: Figures) -> None:
    verifier = _verifier()
    good = mint(_claims(), secret=SECRET)
    assert verifier.verify(good)["sub"] == ALICE
    pem, _ = generate_es256_key()
    header, payload, signature = good.split(".")
    cases = {
        "token expired": mint(_claims(iat=NOW - 7200, exp=NOW - 3600), secret=SECRET),
        "token not yet valid (nbf)": mint(_claims(nbf=NOW + 3600), secret=SECRET),
        "token issued in the future (iat)": mint(_claims(iat=NOW + 3600, exp=NOW + 7200), secret=SECRET),
        "invalid audience": mint(_claims(aud="someone-else"), secret=SECRET),
        "invalid issuer": mint(_claims(iss="https://evil.example/auth/v1"), secret=SECRET),
        "invalid signature": mint(_claims(), secret=SECRET + "x"),
        "alg none is not allowed": jwt.encode(_claims(), None, algorithm="none"),  # type: ignore[arg-type]
        "ES256 not accepted: no JWKS configured": mint(_claims(), private_key=pem),
        "missing required claim": mint({k: v for k, v in _claims().items() if k != "sub"}, secret=SECRET),
        "token too large": mint(_claims(padding="x" * 10_000), secret=SECRET),
        "token is not a compact JWS": "not a token",
        "malformed token": f"{header}.{payload}x.{signature}",
        "exp claim must be a number": mint(_claims(exp="tomorrow"), secret=SECRET),
        "sub claim must be a non-empty string": mint(_claims(sub=""), secret=SECRET),
        "token must be a string": b"bytes are not a token",
    }
    for reason, token in cases.items():
        with pytest.raises(TokenError) as info:
            verifier.verify(token)  # type: ignore[arg-type]
        assert info.value.reason == reason or reason in str(info.value), (reason, info.value)
        assert SECRET not in str(info.value) and str(token)[:20] not in info.value.www_authenticate
    # a service-role API key has no aud and no sub: refused as a user token
    with pytest.raises(TokenError):
        verifier.verify(mint(api_key_claims("service_role"), secret=SECRET))
    figures.add("bad_input", "tokens", len(cases) + 1)


# ------------------------------------------------------------------------------- results too big for memory


def test_limit_and_default_cap_bound_what_is_fetched(ip, figures: Figures) -> None:  # type: ignore[no-untyped-def]
    """Ten million rows asked for: ``--limit`` fetches what it says, the default cap a million, and the footer
    says how to get more; memory stays bounded by the cap, not by the result."""
    from workbench.core.query import DEFAULT_MAX_ROWS

    proc = psutil.Process()
    started = time.perf_counter()
    small = ip.run_cell_magic("sbquery", "--limit 1000", "select g from generate_series(1, 10000000) g")
    assert len(small) == 1000 and time.perf_counter() - started < 10
    assert "truncated at --limit 1,000: raise it, or page with LIMIT/OFFSET" in small.wb_footer
    before = proc.memory_info().rss
    capped = ip.run_cell_magic("sbquery", "", "select g from generate_series(1, 10000000) g")
    growth_mb = (proc.memory_info().rss - before) / 1e6
    assert len(capped) == DEFAULT_MAX_ROWS
    assert f"the default cap is {DEFAULT_MAX_ROWS:,} rows" in capped.wb_footer and "pass --limit N" in capped.wb_footer
    assert growth_mb < 400, f"{growth_mb:.0f} MB for {DEFAULT_MAX_ROWS:,} integers"
    del capped
    figures.add("bad_input", "oversized_results", 2)
    figures.put("bad_input", "capped_result_rss_growth_mb", round(growth_mb))


def test_default_cap_also_bounds_wide_rows(ip, figures: Figures) -> None:  # type: ignore[no-untyped-def]
    """400 rows of 1 MB: without ``--limit`` the cell should stop at a memory budget and say so, as it does at a
    million rows (measured: the whole 400 MB is held)."""
    proc = psutil.Process()
    before = proc.memory_info().rss
    wide = ip.run_cell_magic("sbquery", "", "select g, repeat('x', 1000000) as blob from generate_series(1, 400) g")
    growth_mb = (proc.memory_info().rss - before) / 1e6
    truncated = "truncated" in wide.wb_footer
    del wide
    figures.add("bad_input", "oversized_results")
    assert truncated and growth_mb < 256, f"{growth_mb:.0f} MB held, footer without a truncation notice"


# ------------------------------------------------------------------------------------------- storage


@pytest.fixture(scope="module")
def bucket(own_standin: LocalStandIn) -> Iterator[str]:
    name = f"bad-input-{uuid.uuid4().hex[:8]}"
    key = own_standin.keys().service_role_key
    res = httpx.post(
        f"{own_standin.api_url()}/storage/v1/bucket",
        headers={"Authorization": f"Bearer {key}", "apikey": key},
        json={"id": name, "name": name, "public": False},
    )
    assert res.status_code == 200, res.text
    yield name


def _files_outside(standin: LocalStandIn) -> set[str]:
    """Every file in the stand-in's parent folder, except the database's own and the stored blobs."""
    root = standin.data_dir.parent
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file()
        and "pgdata" not in p.parts
        and not str(p).startswith(str(standin.storage_dir / "objects"))
        and p.name not in ("api.log", "postgres.log", "state.json", ".lock")
    }


ODD_NAMES = [
    "../escape.txt",
    "a/../../escape.txt",
    "./here.txt",
    "/absolute.txt",
    "..",
    ".",
    "a//b.txt",
    "back\\..\\slash.txt",
    "nul\x00byte.txt",
    "new\nline.txt",
    "tab\there.txt",
    "del\x7fchar.txt",
    "café.txt",
    "emoji-🙂.txt",
    "rtl-\u202eexe.txt",
    "x" * 1025,
    "",
    " ",
    "trailing/",
    "%2e%2e/%2e%2e/escape.txt",
    "spaces and (parens) & more, ok; yes=1+1 @home $5 'q'.txt",
]


def _encoded(name: str) -> str:
    """Percent-encode every segment, dots of dot segments included, so the client sends them as they are
    instead of resolving them itself: the server must refuse them."""
    from urllib.parse import quote

    return "/".join(seg.replace(".", "%2E") if seg in (".", "..") else quote(seg, safe="") for seg in name.split("/"))


def test_odd_and_binary_storage_names_and_bytes(own_standin: LocalStandIn, bucket: str, figures: Figures) -> None:
    key = own_standin.keys().service_role_key
    headers = {"Authorization": f"Bearer {key}", "apikey": key}
    base = f"{own_standin.api_url()}/storage/v1/object/{bucket}"
    outside = _files_outside(own_standin)
    statuses: dict[str, int] = {}
    binary = bytes(range(256)) * 64 + b"\x00" * 1000
    with httpx.Client(timeout=30) as http:
        for name in ODD_NAMES:
            res = http.post(f"{base}/{_encoded(name)}", headers=headers, files={"file": ("f", binary)})
            statuses[name] = res.status_code
            assert res.status_code in (200, 400, 404), (name, res.status_code, res.text[:200])
            if res.status_code == 200:
                assert check_key(name) == name  # accepted names are exactly the valid keys
                got = http.get(f"{base}/{_encoded(name)}", headers=headers)
                assert got.status_code == 200 and got.content == binary, name
            else:
                answer = res.json()
                assert set(answer) >= {"statusCode", "error", "message"}, answer
                assert answer["statusCode"] != "500", answer
    for name, status in statuses.items():  # no dot segment, absolute path, control or non-ASCII character got in
        if status == 200:
            assert name.isascii() and name.isprintable() and not name.startswith("/"), name
            assert not {".", ".."} & set(name.split("/")), name
    assert statuses["spaces and (parens) & more, ok; yes=1+1 @home $5 'q'.txt"] == 200
    assert _files_outside(own_standin) == outside  # nothing written anywhere else
    figures.add("bad_input", "storage_names", len(ODD_NAMES))


def test_huge_upload_is_refused_and_leaves_nothing(own_standin: LocalStandIn, bucket: str, figures: Figures) -> None:
    """60 MB against the default 50 MiB limit: 413 in Supabase's shape, no row, no partial file."""
    from workbench.notebook.bridge import run_sync

    key = own_standin.keys().service_role_key
    headers = {"Authorization": f"Bearer {key}", "apikey": key, "content-type": "application/octet-stream"}
    objects = own_standin.storage_dir / "objects"
    blobs_before = set(os.listdir(objects))
    before = run_sync(_snapshot(own_standin.dsn()))

    def body() -> Iterator[bytes]:
        block = os.urandom(1 << 20)
        for _ in range(60):
            yield block

    res = httpx.post(
        f"{own_standin.api_url()}/storage/v1/object/{bucket}/huge.bin", headers=headers, content=body(), timeout=120
    )
    assert res.status_code == 400 and res.json()["statusCode"] == "413", res.text
    assert "maximum allowed size" in res.json()["message"]
    assert set(os.listdir(objects)) == blobs_before
    assert before.differences(run_sync(_snapshot(own_standin.dsn()))) == []
    figures.add("bad_input", "huge_uploads")


# --------------------------------------------------------------------------------- property-based tests

_EXAMPLES: dict[str, int] = {}


def _count(name: str) -> None:
    _EXAMPLES[name] = _EXAMPLES.get(name, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _report_examples(figures: Figures) -> Iterator[None]:
    yield
    for name, count in _EXAMPLES.items():
        figures.add("bad_input", f"hypothesis_{name}", count)


_segment = st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=60)
_jws_like = st.builds(lambda a, b, c: f"{a}.{b}.{c}", _segment, _segment, _segment)
_b64json = st.dictionaries(
    st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(max_size=20), st.booleans())
)


@QUICK
@given(token=st.one_of(st.text(max_size=300), _jws_like, st.binary(max_size=50), st.integers(), st.none()))
def test_property_token_verification_raises_only_token_errors(token: Any) -> None:
    _count("tokens")
    try:
        _verifier().verify(token)
    except TokenError as exc:
        assert exc.reason and SECRET not in str(exc)
    else:
        raise AssertionError(f"accepted {token!r}")


@QUICK
@given(
    header=_b64json,
    claims=_b64json,
    alg=st.sampled_from(["HS256", "HS384", "none", "RS256", "ES256", "", "hs256", "HS256 "]),
    sign=st.booleans(),
)
def test_property_forged_headers_and_claims_raise_only_token_errors(
    header: dict[str, Any], claims: dict[str, Any], alg: str, sign: bool
) -> None:
    """Tokens built from arbitrary JSON headers and claims, signed with the right secret or not."""
    import base64

    _count("forged_tokens")

    def b64(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    if sign and alg == "HS256":
        token = jwt.encode(claims, SECRET, algorithm="HS256", headers={k: v for k, v in header.items() if k != "alg"})
    else:
        token = f"{b64(header | {'alg': alg})}.{b64(claims)}.{b64('sig')}"
    try:
        verified = _verifier().verify(token)
    except TokenError:
        return
    # Accepted only when it truly is a valid token: right secret, required claims, times, audience, issuer.
    assert sign and alg == "HS256" and verified["iss"] == ISSUER and verified["aud"] == "authenticated"


@QUICK
@given(key=st.text(max_size=1200))
def test_property_storage_keys_are_valid_or_refused(key: str) -> None:
    _count("storage_keys")
    try:
        accepted = check_key(key)
    except StorageApiError as exc:
        assert exc.status == 400 and exc.code == "InvalidKey" and exc.message.startswith("Invalid key: ")
        return
    assert accepted == key and key and key.isascii() and not key.startswith("/")
    assert ".." not in key.split("/") and "." not in key.split("/")
    assert all(ch.isprintable() for ch in key) and len(key.encode()) <= 1024


_key_chars = st.sampled_from(
    list(string.ascii_letters + string.digits + "/._-!*'() &$@=;:+,?%\\~`#[]{}|^\"<>") + ["é", "\x00", "\n", "🙂"]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(alphabet=_key_chars, min_size=1, max_size=80))
def test_property_storage_api_answers_any_name_without_escaping(
    own_standin: LocalStandIn, bucket: str, name: str
) -> None:
    """Any name, sent raw (percent-encoded) to the real API: stored under exactly a valid key, or refused in
    Supabase's error shape; never a 500, never a file outside the blob folder."""
    _count("storage_api_names")
    key = own_standin.keys().service_role_key
    headers = {"Authorization": f"Bearer {key}", "apikey": key}
    res = httpx.post(
        f"{own_standin.api_url()}/storage/v1/object/{bucket}/{_encoded(name)}",
        headers=headers | {"x-upsert": "true"},
        files={"file": ("f", b"payload")},
        timeout=30,
    )
    assert res.status_code in (200, 400, 404), (name, res.status_code, res.text[:300])
    if res.status_code == 200:
        assert res.json()["Key"] == f"{bucket}/{name}"
        assert check_key(name) == name
    else:
        assert res.json().get("statusCode") != "500", res.text
    objects = own_standin.storage_dir / "objects"
    assert all(len(p.name.split(".")[0]) == 32 for p in objects.iterdir()), "blob files are named by version only"


_magic_words = st.sampled_from(
    [
        "--as",
        "--role",
        "--claims",
        "-o",
        "--out",
        "--limit",
        "--write",
        "--explain",
        "select",
        "1",
        "'",
        '"',
        " ",
        "'x y'",
        '"{}"',
        "\t",
        "\n",
        "--",
        ":x",
        "::int",
    ]
)


@QUICK
@given(line=st.one_of(st.text(max_size=120), st.lists(_magic_words, max_size=12).map(" ".join)))
def test_property_line_magic_splitting_raises_only_usage_errors(line: str) -> None:
    from IPython.core.magic_arguments import parse_argstring

    from workbench.notebook.magics import WorkbenchMagics

    _count("magic_lines")
    try:
        options, sql = split_line_magic(line)
        parse_argstring(WorkbenchMagics.sbquery, options)
    except UsageError as exc:
        assert str(exc)
        return
    assert sql == sql.strip() and line.rstrip().endswith(sql)
    if not options:
        assert sql == line.strip()


_sql_pieces = st.sampled_from(
    [
        "select",
        " ",
        ":name",
        ":x1",
        "::int",
        ":=",
        "':in string'",
        "$$ :body $$",
        "$1",
        "--c\n",
        "/* :c */",
        "arr[1:2]",
        "arr[:lo]",
        '"q:uoted"',
        "E'\\':x'",
        "(",
        ")",
        "'",
        "$tag$",
        ";",
        ":",
        "ü:é",
        "\x00",
    ]
)


@QUICK
@given(sql=st.one_of(st.text(max_size=200), st.lists(_sql_pieces, max_size=20).map("".join)))
def test_property_parameter_binding_raises_only_documented_errors(sql: str) -> None:
    _count("sql_parameters")
    try:
        bound = bind_parameters(sql)
    except SQLSyntaxError as exc:
        assert str(exc)
        return
    except ValueError as exc:  # mixing $1 and :name styles
        assert "positional parameters" in str(exc)
        return
    assert isinstance(bound, BoundStatement)
    assert len(set(bound.names)) == len(bound.names)
    for number in range(1, len(bound.names) + 1):
        assert f"${number}" in bound.sql
    if ":" not in sql:
        assert bound.sql == sql
    with contextlib.suppress(SQLSyntaxError):
        split_statements(sql)


@QUICK
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
            max_leaves=20,
        ).map(json.dumps),
    )
)
def test_property_claims_parse_or_say_why(text: str) -> None:
    _count("claims")
    try:
        parsed = parse_claims(text)
    except IdentityError as exc:
        assert "JSON" in str(exc)
        return
    assert isinstance(parsed, dict)
