"""The stand-in's own extensions (workbench/local/extensions): created by the non-superuser ``postgres`` as on
Supabase, checked against Python's hashlib, hmac, bcrypt, uuid, PyJWT and jsonschema."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import bcrypt
import jsonschema
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXTENSIONS_DIR = Path(__file__).resolve().parents[2] / "workbench" / "local" / "extensions" / "extension"
DATABASE = "supaext_extensions"
HASHES = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
NOT_AVAILABLE = "is not available in the local stand-in"
PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


async def _recreate(standin: Any, name: str) -> str:
    conn = await asyncpg.connect(standin.dsn())
    try:
        await conn.execute(f'drop database if exists "{name}" with (force)')
        await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    return standin.dsn(database=name)


@pytest.fixture(scope="module")
async def ext_dsn(standin: Any) -> str:
    """A fresh database in which ``postgres`` (not a superuser) creates every extension as a migration would."""
    dsn = await _recreate(standin, DATABASE)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            create schema if not exists extensions;
            create extension if not exists "uuid-ossp" with schema extensions;
            create extension if not exists pgcrypto with schema extensions;
            create extension if not exists pgjwt with schema extensions;
            create extension if not exists pg_jsonschema with schema extensions;
            create extension if not exists http with schema extensions;
            create extension if not exists pg_hashids with schema extensions;
            create extension if not exists pg_net with schema extensions;
            create extension if not exists supabase_vault;
            create extension if not exists pgsodium;
            create extension if not exists pg_graphql;
            create extension if not exists pg_cron with schema pg_catalog;
            create extension if not exists plv8 with schema pg_catalog;
            """
        )
    finally:
        await conn.close()
    return dsn


@pytest.fixture()
async def db(ext_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(ext_dsn)
    try:
        await conn.execute("set search_path = public, extensions")
        yield conn
    finally:
        await conn.close()


# -- creation -----------------------------------------------------------------------------------------


async def test_postgres_is_not_a_superuser_and_each_extension_lands_in_supabases_schema(ext_dsn: str) -> None:
    conn = await asyncpg.connect(ext_dsn)
    try:
        assert await conn.fetchval("select rolsuper from pg_roles where rolname = current_user") is False
        where = dict(await conn.fetch("select extname, extnamespace::regnamespace::text from pg_extension"))
    finally:
        await conn.close()
    assert where["pgcrypto"] == where["uuid-ossp"] == where["pgjwt"] == where["pg_net"] == "extensions"
    assert (where["supabase_vault"], where["pgsodium"], where["pg_graphql"]) == ("vault", "pgsodium", "graphql")
    assert where["pg_cron"] == where["plv8"] == "pg_catalog"


def test_every_control_is_trusted_and_has_its_script() -> None:
    controls = sorted(EXTENSIONS_DIR.glob("*.control"))
    assert len(controls) >= 15  # the server ships contrib; trusted copies of those are generated per cluster
    for control in controls:
        text = control.read_text()
        assert "trusted = true" in text, control.name
        version = next(line.split("'")[1] for line in text.splitlines() if line.startswith("default_version"))
        name = control.stem
        scripts = [p.name for p in EXTENSIONS_DIR.glob(f"{name}--*.sql")]
        assert any(s.endswith(f"--{version}.sql") or f"--{version}.sql" in s for s in scripts), (name, version)


# -- pgcrypto: digest, hmac -----------------------------------------------------------------------------


async def test_digest_known_answers(db: asyncpg.Connection) -> None:
    for name in HASHES:
        for data in (b"", b"abc", b"a" * 1000):
            got = await db.fetchval("select digest($1::bytea, $2)", data, name)
            assert got == hashlib.new(name, data).digest(), (name, len(data))
    assert await db.fetchval("select encode(digest('abc', 'SHA1'), 'hex')") == hashlib.sha1(b"abc").hexdigest()
    assert await db.fetchval("select digest('héllo'::text, 'sha256')") == hashlib.sha256("héllo".encode()).digest()


@PROPERTY
@given(data=st.lists(st.binary(max_size=300), min_size=1, max_size=8))
async def test_digest_matches_hashlib(db: asyncpg.Connection, data: list[bytes]) -> None:
    rows = await db.fetch(
        "select d, h, digest(d, h) as out from unnest($1::bytea[]) d cross join unnest($2::text[]) h", data, HASHES
    )
    assert len(rows) == len(data) * len(HASHES)
    for row in rows:
        assert row["out"] == hashlib.new(row["h"], row["d"]).digest()


@PROPERTY
@given(message=st.binary(max_size=400), key=st.binary(max_size=300), name=st.sampled_from(HASHES))
async def test_hmac_matches_python(db: asyncpg.Connection, message: bytes, key: bytes, name: str) -> None:
    assert (
        await db.fetchval("select hmac($1::bytea, $2::bytea, $3)", message, key, name)
        == hmac.new(key, message, name).digest()
    )


async def test_hmac_text_and_unknown_algorithm(db: asyncpg.Connection) -> None:
    expected = hmac.new(b"key", b"The quick brown fox", "sha256").hexdigest()
    assert await db.fetchval("select encode(hmac('The quick brown fox', 'key', 'sha256'), 'hex')") == expected
    with pytest.raises(asyncpg.PostgresError, match='Cannot use "sha3": No such hash algorithm'):
        await db.fetchval("select hmac('x', 'k', 'sha3')")


# -- pgcrypto: crypt, gen_salt ----------------------------------------------------------------------------


async def test_bcrypt_known_answer_and_verification(db: asyncpg.Connection) -> None:
    setting = "$2a$06$abcdefghijklmnopqrstuu"
    expected = bcrypt.hashpw(b"password", setting.encode()).decode()
    assert await db.fetchval("select crypt('password', $1)", setting) == expected
    assert await db.fetchval("select crypt('password', $1)", expected) == expected  # a stored hash checks itself
    assert await db.fetchval("select crypt('wrong', $1)", expected) != expected


async def test_seed_pattern_is_verified_by_python_bcrypt(db: asyncpg.Connection) -> None:
    salt = await db.fetchval("select gen_salt('bf')")
    assert salt.startswith("$2a$06$") and len(salt) == 29  # pgcrypto's default cost is 6
    hashed = await db.fetchval("select crypt('seeded-password', gen_salt('bf'))")
    assert bcrypt.checkpw(b"seeded-password", hashed.encode())
    assert not bcrypt.checkpw(b"seeded-passworD", hashed.encode())
    made_by_python = bcrypt.hashpw("päss".encode(), bcrypt.gensalt(rounds=4)).decode()
    assert await db.fetchval("select crypt('päss', $1) = $1", made_by_python) is True


async def test_a_user_seeded_with_crypt_signs_in_through_the_supabase_client(standin: Any) -> None:
    """THE seed pattern: ``encrypted_password = crypt('pw', gen_salt('bf'))`` in the stand-in's own database,
    then a password sign-in through the real supabase client and the local Auth API."""
    from supabase import AsyncClientOptions, acreate_client
    from supabase_auth.errors import AuthApiError

    email = f"seeded-{uuid.uuid4().hex[:10]}@example.com"
    conn = await asyncpg.connect(standin.dsn())
    user_id = None
    try:
        user_id = await conn.fetchval(
            "insert into auth.users (id, aud, role, email, encrypted_password, email_confirmed_at)"
            " values (gen_random_uuid(), 'authenticated', 'authenticated', $1,"
            " extensions.crypt($2, extensions.gen_salt('bf')), now()) returning id",
            email,
            "seeded-Passw0rd",
        )
        client = await acreate_client(
            standin.api_url(), standin.keys().anon_key, options=AsyncClientOptions(auto_refresh_token=False)
        )
        signed_in = await client.auth.sign_in_with_password({"email": email, "password": "seeded-Passw0rd"})
        assert signed_in.user is not None and signed_in.user.email == email and signed_in.session is not None
        with pytest.raises(AuthApiError):
            await client.auth.sign_in_with_password({"email": email, "password": "seeded-passw0rd"})
    finally:
        # the session's stand-in is shared: the demo's profile trigger made a row for this user too
        if user_id is not None:
            if await conn.fetchval("select to_regclass('public.profiles') is not null"):
                await conn.execute("delete from public.profiles where id = $1", user_id)
            await conn.execute("delete from auth.users where id = $1", user_id)
        await conn.close()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    password=st.text(max_size=24).filter(lambda s: "\x00" not in s and len(s.encode()) <= 72),
    raw=st.binary(min_size=16, max_size=16),
)
async def test_bcrypt_matches_python_bcrypt(db: asyncpg.Connection, password: str, raw: bytes) -> None:
    setting = bcrypt.gensalt(rounds=4)[:7].decode() + _bcrypt_b64(raw)
    expected = bcrypt.hashpw(password.encode(), setting.encode()).decode()
    assert await db.fetchval("select crypt($1, $2)", password, setting) == expected


async def test_bcrypt_uses_the_first_72_bytes_and_other_prefixes(db: asyncpg.Connection) -> None:
    long = "x" * 72
    salt = "$2b$04$" + _bcrypt_b64(bytes(range(16)))
    assert await db.fetchval("select crypt($1, $2) = crypt($1 || 'tail', $2)", long, salt) is True
    assert await db.fetchval("select crypt('pw', $1)", salt) == bcrypt.hashpw(b"pw", salt.encode()).decode()


async def test_md5_crypt_known_answers(db: asyncpg.Connection) -> None:
    # from `openssl passwd -1 -salt SALT PASSWORD`
    cases = {
        ("password", "$1$saltsalt"): "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/",
        ("", "$1$a"): "$1$a$8CfZSfErbeskipdhZHtvu.",
        ("pässwörd-long-long-long-long-long-long", "$1$12345678"): "$1$12345678$OYeMqaW4OSq453.dIiQkm.",
    }
    for (password, salt), expected in cases.items():
        assert await db.fetchval("select crypt($1, $2)", password, salt) == expected
        assert await db.fetchval("select crypt($1, $2)", password, expected) == expected
    salt = await db.fetchval("select gen_salt('md5')")
    assert salt.startswith("$1$") and len(salt) == 11


async def test_gen_salt_and_crypt_refuse_bad_input_clearly(db: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.PostgresError, match="Incorrect number of rounds"):
        await db.fetchval("select gen_salt('bf', 3)")
    with pytest.raises(asyncpg.PostgresError, match="Unknown salt algorithm"):
        await db.fetchval("select gen_salt('sha9')")
    with pytest.raises(asyncpg.FeatureNotSupportedError, match=NOT_AVAILABLE):
        await db.fetchval("select gen_salt('des')")
    with pytest.raises(asyncpg.FeatureNotSupportedError, match=NOT_AVAILABLE):
        await db.fetchval("select crypt('pw', 'ab')")
    with pytest.raises(asyncpg.PostgresError, match="invalid salt"):
        await db.fetchval("select crypt('pw', '$9$nonsense')")


# -- pgcrypto: random, armor, unavailable parts ---------------------------------------------------------------


async def test_gen_random_bytes_and_uuid(db: asyncpg.Connection) -> None:
    many = await db.fetch("select gen_random_bytes(32) as b from generate_series(1, 200)")
    values = [row["b"] for row in many]
    assert all(len(v) == 32 for v in values) and len(set(values)) == 200
    ones = sum(bin(byte).count("1") for v in values for byte in v)
    assert 0.45 < ones / (200 * 32 * 8) < 0.55  # no fixed version/variant bits leak through
    assert len(await db.fetchval("select gen_random_bytes(1024)")) == 1024
    with pytest.raises(asyncpg.PostgresError, match="Length not within range"):
        await db.fetchval("select gen_random_bytes(1025)")
    u = await db.fetchval("select extensions.gen_random_uuid()")
    assert isinstance(u, uuid.UUID) and u.version == 4


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


@PROPERTY
@given(data=st.binary(min_size=1, max_size=200))
async def test_armor_round_trips_with_rfc4880_checksum(db: asyncpg.Connection, data: bytes) -> None:
    text = await db.fetchval("select armor($1::bytea, array['Comment'], array['local'])", data)
    assert text.startswith("-----BEGIN PGP MESSAGE-----\nComment: local\n\n")
    checksum = base64.b64encode(_crc24(data).to_bytes(3, "big")).decode()
    assert f"\n={checksum}\n-----END PGP MESSAGE-----" in text
    assert await db.fetchval("select dearmor($1)", text) == data


async def test_pgp_and_raw_ciphers_raise_one_clear_error(db: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.FeatureNotSupportedError, match=f"pgcrypto.pgp_sym_encrypt {NOT_AVAILABLE}"):
        await db.fetchval("select pgp_sym_encrypt('data', 'key')")
    with pytest.raises(asyncpg.FeatureNotSupportedError, match=f"pgcrypto.encrypt {NOT_AVAILABLE}"):
        await db.fetchval("select encrypt('data', 'key', 'aes')")


# -- uuid-ossp ----------------------------------------------------------------------------------------------------


async def test_uuid_ossp_constants_and_time_based(db: asyncpg.Connection) -> None:
    row = await db.fetchrow(
        "select uuid_nil() nil, uuid_ns_dns() dns, uuid_ns_url() url, uuid_ns_oid() oid, uuid_ns_x500() x500,"
        " uuid_generate_v1() v1, uuid_generate_v1mc() v1mc, uuid_generate_v4() v4"
    )
    assert row["nil"] == uuid.UUID(int=0)
    assert (row["dns"], row["url"], row["oid"], row["x500"]) == (
        uuid.NAMESPACE_DNS,
        uuid.NAMESPACE_URL,
        uuid.NAMESPACE_OID,
        uuid.NAMESPACE_X500,
    )
    for value in (row["v1"], row["v1mc"]):
        assert value.version == 1 and value.variant == uuid.RFC_4122
        seconds = (value.time - 0x01B21DD213814000) / 1e7
        assert abs(seconds - time.time()) < 60
        assert value.node & (1 << 40)  # the multicast bit: not a real MAC address
    assert row["v4"].version == 4


@PROPERTY
@given(names=st.lists(st.text(max_size=40), min_size=1, max_size=10))
async def test_uuid_v3_and_v5_equal_pythons(db: asyncpg.Connection, names: list[str]) -> None:
    names = [n.replace("\x00", "") for n in names]
    rows = await db.fetch(
        "select n, uuid_generate_v3(uuid_ns_url(), n) v3, uuid_generate_v5(uuid_ns_dns(), n) v5"
        " from unnest($1::text[]) n",
        names,
    )
    for row in rows:
        assert row["v3"] == uuid.uuid3(uuid.NAMESPACE_URL, row["n"])
        assert row["v5"] == uuid.uuid5(uuid.NAMESPACE_DNS, row["n"])


# -- pgjwt --------------------------------------------------------------------------------------------------------


async def test_pgjwt_tokens_verify_with_pyjwt_both_ways(db: asyncpg.Connection) -> None:
    secret = "local-secret-" + "x" * 64  # PyJWT warns below the hash's size
    claims = {"sub": "alice", "role": "authenticated", "exp": int(time.time()) + 600}
    for alg in ("HS256", "HS384", "HS512"):
        token = await db.fetchval("select sign($1::json, $2, $3)", json.dumps(claims), secret, alg)
        assert jwt.decode(token, secret, algorithms=[alg]) == claims
        made = jwt.encode(claims, secret, algorithm=alg)
        row = await db.fetchrow("select header, payload, valid from verify($1, $2, $3)", made, secret, alg)
        assert row["valid"] is True and json.loads(row["payload"]) == claims
        assert (await db.fetchrow("select valid from verify($1, 'other-secret', $2)", made, alg))["valid"] is False
    expired = jwt.encode({"sub": "x", "exp": int(time.time()) - 10}, secret, algorithm="HS256")
    assert (await db.fetchrow("select valid from verify($1, $2)", expired, secret))["valid"] is False


# -- supabase_vault, pg_net, pg_cron ----------------------------------------------------------------------------


async def test_vault_stores_and_shows_secrets_to_postgres_only(db: asyncpg.Connection) -> None:
    name = f"api-key-{uuid.uuid4()}"
    secret_id = await db.fetchval("select vault.create_secret('s3cr3t', $1, 'third-party API')", name)
    row = await db.fetchrow(
        "select secret, decrypted_secret, description from vault.decrypted_secrets where id = $1", secret_id
    )
    assert tuple(row) == ("s3cr3t", "s3cr3t", "third-party API")
    await db.execute("select vault.update_secret($1, 'rotated')", secret_id)
    assert await db.fetchval("select decrypted_secret from vault.decrypted_secrets where name = $1", name) == "rotated"
    for role in ("anon", "authenticated"):
        async with db.transaction():
            await db.execute(f"set local role {role}")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await db.fetch("select * from vault.decrypted_secrets")


async def test_pg_net_records_requests_and_never_sends(db: asyncpg.Connection) -> None:
    notices: list[str] = []
    db.add_log_listener(lambda _c, message: notices.append(message.message))
    post = await db.fetchval(
        "select net.http_post('http://127.0.0.1:9/hook', jsonb_build_object('id', 7), headers := '{\"X-Key\": \"k\"}')"
    )
    get = await db.fetchval("select net.http_get('http://127.0.0.1:9/search', '{\"q\": \"a b&c\"}')")
    delete = await db.fetchval("select net.http_delete('http://127.0.0.1:9/item/1')")
    rows = {
        r["id"]: r
        for r in await db.fetch("select * from net.http_request_queue where id = any($1)", [post, get, delete])
    }
    assert rows[post]["method"] == "POST" and json.loads(rows[post]["body"]) == {"id": 7}
    assert json.loads(rows[post]["headers"]) == {"X-Key": "k", "Content-Type": "application/json"}
    assert rows[get]["url"] == "http://127.0.0.1:9/search?q=a%20b%26c"
    assert rows[delete]["method"] == "DELETE"
    assert await db.fetchval("select count(*) from net._http_response where id = any($1)", [post, get, delete]) == 0
    assert any("never sends HTTP requests" in n for n in notices)
    with pytest.raises(asyncpg.PostgresError, match="Content-Type header must be"):
        await db.fetchval("select net.http_post('http://x', '{}', headers := '{\"Content-Type\": \"text/plain\"}')")


async def test_pg_cron_records_jobs_that_never_run(db: asyncpg.Connection) -> None:
    notices: list[str] = []
    db.add_log_listener(lambda _c, message: notices.append(message.message))
    first = await db.fetchval("select cron.schedule('nightly-cleanup', '0 3 * * *', 'delete from t')")
    again = await db.fetchval("select cron.schedule('nightly-cleanup', '30 3 * * *', 'delete from t2')")
    assert first == again  # a job name is scheduled once; scheduling it again updates it, as pg_cron does
    row = await db.fetchrow("select schedule, command, username, active from cron.job where jobid = $1", first)
    assert tuple(row) == ("30 3 * * *", "delete from t2", "postgres", True)
    assert any("never runs scheduled jobs" in n for n in notices)
    assert await db.fetchval("select cron.unschedule('nightly-cleanup')") is True
    assert await db.fetchval("select count(*) from cron.job where jobid = $1", first) == 0
    with pytest.raises(asyncpg.PostgresError, match="invalid schedule"):
        await db.fetchval("select cron.schedule('every day at noon', 'select 1')")


# -- plv8, pg_jsonschema, stubs ---------------------------------------------------------------------------------


async def test_plv8_functions_are_refused_clearly(db: asyncpg.Connection) -> None:
    for check_bodies in ("on", "off"):
        await db.execute(f"set check_function_bodies = {check_bodies}")
        with pytest.raises(
            asyncpg.FeatureNotSupportedError, match="plv8 functions cannot be created in the local stand-in"
        ):
            await db.execute("create function public.js_add(a int, b int) returns int language plv8 as 'return a + b'")


JSON_SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 1}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name"],
        "additionalProperties": False,
    },
    {"type": "array", "items": {"type": "number", "exclusiveMaximum": 10}, "minItems": 1, "uniqueItems": True},
    {"anyOf": [{"type": "string", "pattern": "^[a-z]+$"}, {"type": "null"}]},
    {"oneOf": [{"type": "integer", "multipleOf": 3}, {"type": "integer", "multipleOf": 5}]},
    {"enum": ["draft", "published", 1, None]},
    {"type": ["string", "boolean"], "not": {"const": "forbidden"}, "maxLength": 5},
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-20, 20)
    | st.floats(-20, 20, allow_nan=False).map(lambda f: round(f, 2))
    | st.sampled_from(["", "abc", "ABC", "draft", "forbidden", "name", "toolong!"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["name", "age", "extra"]), children, max_size=3)
    ),
    max_leaves=8,
)


@PROPERTY
@given(schema=st.sampled_from(JSON_SCHEMAS), value=JSON_VALUES)
async def test_json_matches_schema_agrees_with_python_jsonschema(
    db: asyncpg.Connection, schema: dict[str, Any], value: Any
) -> None:
    expected = jsonschema.Draft7Validator(schema).is_valid(value)
    got = await db.fetchval("select json_matches_schema($1::json, $2::json)", json.dumps(schema), json.dumps(value))
    assert got is expected, (schema, value)
    assert (
        await db.fetchval("select jsonb_matches_schema($1::json, $2::jsonb)", json.dumps(schema), json.dumps(value))
        is expected
    )


async def test_stub_functions_raise_feature_not_supported_naming_themselves(db: asyncpg.Connection) -> None:
    rows = await db.fetch(
        """
        select e.extname, p.oid::regproc::text as fn, p.proname,
               coalesce((select string_agg('null::' || format_type(t, null), ', ' order by i)
                         from unnest(p.proargtypes) with ordinality a(t, i)), '') as args,
               p.proretset
        from pg_proc p
        join pg_depend d on d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e'
        join pg_extension e on e.oid = d.refobjid
        where e.extname in ('pgsodium', 'pg_graphql', 'http', 'pg_hashids')
          and p.prosrc like '%is not available in the local stand-in%'
        """
    )
    assert {r["extname"] for r in rows} == {"pgsodium", "pg_graphql", "http", "pg_hashids"}
    for row in rows:
        call = f"select * from {row['fn']}({row['args']})" if row["proretset"] else f"select {row['fn']}({row['args']})"
        with pytest.raises(
            asyncpg.FeatureNotSupportedError, match=f"{row['extname']}.{row['proname']} {NOT_AVAILABLE}"
        ):
            await db.fetch(call)


async def test_faithful_parts_of_otherwise_stubbed_extensions(db: asyncpg.Connection) -> None:
    assert await db.fetchval("select pgsodium.crypto_hash_sha256('abc'::bytea)") == hashlib.sha256(b"abc").digest()
    assert len(await db.fetchval("select pgsodium.randombytes_buf(40)")) == 40
    assert await db.fetchval("select urlencode('a b/é')") == "a%20b%2F%C3%A9"
    header = await db.fetchrow("select (http_header('Authorization', 'Bearer x')).*")
    assert tuple(header) == ("Authorization", "Bearer x")
    with pytest.raises(asyncpg.FeatureNotSupportedError, match=f"pg_graphql.resolve {NOT_AVAILABLE}"):
        await db.fetchval("select graphql_public.graphql(query := '{ __typename }')")


def _bcrypt_b64(raw: bytes) -> str:
    std = base64.b64encode(raw).decode().rstrip("=")
    return std.translate(
        str.maketrans(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        )
    )
