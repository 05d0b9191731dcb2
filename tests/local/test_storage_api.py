"""The local Storage API through the real ``supabase`` client (sync and async), as Supabase answers it.

Every storage3 call of shared/supabase.md section 4 runs as the service role and as demo users, allowed
and refused by policies; names, limits, tokens and concurrency are attacked; and the data folder is
checked to hold exactly the blobs the rows reference.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from storage3.exceptions import StorageApiError
from supabase import AsyncClientOptions, ClientOptions, acreate_client, create_client

from workbench.backend.tokens import access_token_claims, mint
from workbench.local.demo import DEMO_DIR
from workbench.local.standin import LocalStandIn

ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"
KINDS = ["sync", "async"]
PLAN = (DEMO_DIR / "files" / "plan.txt").read_bytes()


# ------------------------------------------------------------------------------------------ helpers


async def resolve(value: Any) -> Any:
    """The same test drives the sync client (plain values) and the async one (awaitables)."""
    return await value if inspect.isawaitable(value) else value


def user_token(standin: LocalStandIn, sub: str, email: str, **overrides: Any) -> str:
    claims = access_token_claims(sub, email=email, iss=f"{standin.api_url()}/auth/v1") | overrides
    return mint(claims, secret=standin.keys().jwt_secret)


async def client(standin: LocalStandIn, kind: str, *, key: str | None = None, token: str | None = None) -> Any:
    """A real supabase client: the service key, the anon key, or the anon key plus a user's JWT."""
    api_key = key or standin.keys().anon_key
    headers = {"Authorization": f"Bearer {token}"} if token else None
    if kind == "sync":
        return create_client(standin.api_url(), api_key, options=ClientOptions(headers=headers or {}))
    options = AsyncClientOptions(headers=headers) if headers else None
    return await acreate_client(standin.api_url(), api_key, options=options)


async def expect_error(call: Any, status: str, error: str | None = None, message: str | None = None) -> StorageApiError:
    with pytest.raises(StorageApiError) as info:
        await resolve(call() if callable(call) else call)
    exc = info.value
    assert str(exc.status) == status, exc.to_dict()
    if error is not None:
        assert exc.code == error, exc.to_dict()
    if message is not None:
        assert message in exc.message, exc.to_dict()
    return exc


async def sql(standin: LocalStandIn, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(standin.dsn())
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def blob_files(standin: LocalStandIn) -> set[str]:
    return {p.name for p in (standin.storage_dir / "objects").iterdir()}


async def referenced_versions(standin: LocalStandIn) -> set[str]:
    return {r["version"] for r in await sql(standin, "select version from storage.objects")}


async def assert_no_orphans(standin: LocalStandIn) -> None:
    """Every blob on disk belongs to a row, every row has its blob, no partial file is left."""
    assert blob_files(standin) == await referenced_versions(standin)


def api(standin: LocalStandIn, path: str) -> str:
    return f"{standin.api_url()}/storage/v1{path}"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "apikey": token}


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def service_key(standin: LocalStandIn) -> str:
    return standin.keys().service_role_key


@pytest.fixture(scope="module")
def alice_token(standin: LocalStandIn) -> str:
    return user_token(standin, ALICE, "alice@example.com")


@pytest.fixture(scope="module")
def bob_token(standin: LocalStandIn) -> str:
    return user_token(standin, BOB, "bob@example.com")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def admin(standin: LocalStandIn, kind: str, service_key: str) -> Any:
    return await client(standin, kind, key=service_key)


@pytest.fixture
async def alice(standin: LocalStandIn, kind: str, alice_token: str) -> Any:
    return await client(standin, kind, token=alice_token)


@pytest.fixture
async def bob(standin: LocalStandIn, kind: str, bob_token: str) -> Any:
    return await client(standin, kind, token=bob_token)


@pytest.fixture
async def bucket(standin: LocalStandIn, service_key: str) -> AsyncIterator[str]:
    """A private bucket of this test's own, emptied and removed afterwards."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    cleanup = await client(standin, "async", key=service_key)
    await cleanup.storage.create_bucket(name)
    yield name
    await cleanup.storage.empty_bucket(name)
    await cleanup.storage.delete_bucket(name)
    await assert_no_orphans(standin)


@pytest.fixture
async def folder_policies(standin: LocalStandIn, bucket: str) -> AsyncIterator[str]:
    """Supabase's documented "own folder" policies, written as one would for a real project."""
    tag = bucket.replace("-", "_")
    text = f"""
        create policy "{tag} read own folder" on storage.objects for select to authenticated
          using (bucket_id = '{bucket}' and (storage.foldername(name))[1] = (select auth.uid())::text);
        create policy "{tag} upload own folder" on storage.objects for insert to authenticated
          with check (bucket_id = '{bucket}' and (storage.foldername(name))[1] = (select auth.uid())::text);
        create policy "{tag} update own files" on storage.objects for update to authenticated
          using (bucket_id = '{bucket}' and owner_id = (select auth.uid())::text);
        create policy "{tag} delete own files" on storage.objects for delete to authenticated
          using (bucket_id = '{bucket}' and owner_id = (select auth.uid())::text);
    """
    conn = await asyncpg.connect(standin.dsn())
    try:
        await conn.execute(text)
        yield bucket
    finally:
        for action in ("read own folder", "upload own folder", "update own files", "delete own files"):
            await conn.execute(f'drop policy if exists "{tag} {action}" on storage.objects')
        await conn.close()


# ------------------------------------------------------------------------------------------ buckets


async def test_bucket_lifecycle_as_service_role(standin: LocalStandIn, admin: Any) -> None:
    name = f"t-{uuid.uuid4().hex[:12]}"
    created = await resolve(
        admin.storage.create_bucket(
            name, options={"public": True, "file_size_limit": 1000, "allowed_mime_types": ["text/plain"]}
        )
    )
    assert created == {"name": name}
    got = await resolve(admin.storage.get_bucket(name))
    assert (got.id, got.public, got.file_size_limit, got.allowed_mime_types) == (name, True, 1000, ["text/plain"])
    assert name in [b.id for b in await resolve(admin.storage.list_buckets())]

    updated = await resolve(admin.storage.update_bucket(name, {"public": False, "file_size_limit": 2000}))
    assert updated == {"message": "Successfully updated"}
    got = await resolve(admin.storage.get_bucket(name))
    assert (got.public, got.file_size_limit, got.allowed_mime_types) == (False, 2000, ["text/plain"])

    await resolve(admin.storage.from_(name).upload("a.txt", b"x"))
    err = await expect_error(lambda: admin.storage.delete_bucket(name), "409", "ResourceNotEmpty")
    assert "not empty" in err.message
    assert await resolve(admin.storage.empty_bucket(name)) == {"message": "Successfully emptied"}
    assert await resolve(admin.storage.from_(name).list()) == []
    assert await resolve(admin.storage.delete_bucket(name)) == {"message": "Successfully deleted"}
    await expect_error(lambda: admin.storage.get_bucket(name), "404", "Bucket not found", "Bucket not found")
    await assert_no_orphans(standin)


async def test_bucket_errors(admin: Any, bucket: str) -> None:
    await expect_error(lambda: admin.storage.create_bucket(bucket), "409", "Duplicate", "already exists")
    await expect_error(lambda: admin.storage.create_bucket("bad/name"), "400", "Invalid Input", "Bucket name invalid")
    await expect_error(lambda: admin.storage.create_bucket("x" * 64), "400", "Invalid Input")
    await expect_error(lambda: admin.storage.delete_bucket("no-such-bucket"), "404", "Bucket not found")
    await expect_error(lambda: admin.storage.empty_bucket("no-such-bucket"), "404", "Bucket not found")
    await expect_error(lambda: admin.storage.update_bucket("no-such-bucket", {"public": True}), "404")
    await expect_error(
        lambda: admin.storage.update_bucket(bucket, {"allowed_mime_types": ["not a type"]}), "415", "invalid_mime_type"
    )
    # Above the project's global limit (Supabase's default 50 MiB), as Supabase refuses it.
    await expect_error(
        lambda: admin.storage.update_bucket(bucket, {"file_size_limit": 10**12}), "413", "Payload too large"
    )


async def test_buckets_as_users_follow_bucket_policies(alice: Any, bucket: str) -> None:
    """The demo has no policies on storage.buckets: a user sees none and may create none (as on Supabase)."""
    assert await resolve(alice.storage.list_buckets()) == []
    await expect_error(lambda: alice.storage.get_bucket("documents"), "404", "Bucket not found")
    await expect_error(
        lambda: alice.storage.create_bucket(f"t-{uuid.uuid4().hex[:12]}"),
        "403",
        "Unauthorized",
        "new row violates row-level security policy",
    )
    await expect_error(lambda: alice.storage.update_bucket(bucket, {"public": True}), "404")
    await expect_error(lambda: alice.storage.empty_bucket(bucket), "404")
    await expect_error(lambda: alice.storage.delete_bucket(bucket), "404")


# ------------------------------------------------------------------------------- objects, as admin


async def test_object_round_trip_as_service_role(standin: LocalStandIn, admin: Any, bucket: str) -> None:
    files = admin.storage.from_(bucket)
    res = await resolve(files.upload("docs/readme.md", b"# hello", {"content-type": "text/markdown"}))
    assert (res.path, res.full_path) == ("docs/readme.md", f"{bucket}/docs/readme.md")
    assert await resolve(files.download("docs/readme.md")) == b"# hello"

    info = await resolve(files.info("docs/readme.md"))
    assert info["size"] == 7 and info["content_type"] == "text/markdown" and info["bucket_id"] == bucket
    assert info["etag"] == f'"{hashlib.md5(b"# hello").hexdigest()}"'
    assert info["cache_control"] == "max-age=3600"
    assert await resolve(files.exists("docs/readme.md")) is True
    assert await resolve(files.exists("docs/missing.md")) is False

    listing = await resolve(files.list())
    assert [(e["name"], e["id"]) for e in listing] == [("docs", None)]
    listing = await resolve(files.list("docs"))
    assert [e["name"] for e in listing] == ["readme.md"]
    meta = listing[0]["metadata"]
    assert {k: meta[k] for k in ("size", "mimetype", "contentLength", "httpStatusCode")} == {
        "size": 7,
        "mimetype": "text/markdown",
        "contentLength": 7,
        "httpStatusCode": 200,
    }
    assert set(meta) >= {"eTag", "cacheControl", "lastModified"}

    removed = await resolve(files.remove(["docs/readme.md", "docs/never-existed.md"]))
    assert [r["name"] for r in removed] == ["docs/readme.md"]
    await expect_error(lambda: files.download("docs/readme.md"), "404", "not_found", "Object not found")
    await expect_error(lambda: files.info("docs/readme.md"), "404", "not_found")
    await expect_error(lambda: admin.storage.from_("no-such-bucket").upload("a.txt", b"x"), "404", "Bucket not found")
    await assert_no_orphans(standin)


async def test_upsert_update_and_duplicates(standin: LocalStandIn, admin: Any, bucket: str) -> None:
    files = admin.storage.from_(bucket)
    await resolve(files.upload("a.txt", b"one"))
    await expect_error(lambda: files.upload("a.txt", b"two"), "409", "Duplicate", "already exists")
    assert await resolve(files.download("a.txt")) == b"one"
    await resolve(files.upload("a.txt", b"two", {"upsert": "true"}))
    assert await resolve(files.download("a.txt")) == b"two"
    await resolve(files.update("a.txt", b"three"))
    assert await resolve(files.download("a.txt")) == b"three"
    await resolve(files.update("b.txt", b"new via update"))  # PUT upserts, as on Supabase
    assert await resolve(files.download("b.txt")) == b"new via update"
    await assert_no_orphans(standin)  # the replaced versions' blobs are gone


async def test_move_and_copy_as_service_role(admin: Any, bucket: str) -> None:
    files = admin.storage.from_(bucket)
    await resolve(files.upload("src/a.txt", b"A"))
    await resolve(files.upload("src/b.txt", b"B"))
    moved = await resolve(files.move("src/a.txt", "dst/a.txt"))
    assert moved["message"] == "Successfully moved"
    assert await resolve(files.download("dst/a.txt")) == b"A"
    await expect_error(lambda: files.download("src/a.txt"), "404")
    copied = await resolve(files.copy("src/b.txt", "dst/b-copy.txt"))
    assert copied["Key"] == f"{bucket}/dst/b-copy.txt"
    assert await resolve(files.download("dst/b-copy.txt")) == b"B"
    assert await resolve(files.download("src/b.txt")) == b"B"
    await expect_error(lambda: files.move("src/b.txt", "dst/a.txt"), "409", "Duplicate")
    await expect_error(lambda: files.move("src/nothing.txt", "dst/x.txt"), "404", "not_found")
    await expect_error(lambda: files.copy("src/nothing.txt", "dst/x.txt"), "404", "not_found")
    await expect_error(lambda: files.copy("src/b.txt", "dst/b-copy.txt"), "409", "Duplicate")


async def test_list_paging_sorting_and_search(admin: Any, bucket: str) -> None:
    files = admin.storage.from_(bucket)
    for name in ["b.txt", "a.txt", "C.txt", "report-1.csv", "report-2.csv", "sub/inner.txt", "Zeta/z.txt"]:
        await resolve(files.upload(f"dir/{name}", name.encode()))
    names = [e["name"] for e in await resolve(files.list("dir"))]
    assert names == ["Zeta", "sub", "C.txt", "a.txt", "b.txt", "report-1.csv", "report-2.csv"]  # folders first, C order
    page = await resolve(files.list("dir", {"limit": 3, "offset": 2}))
    assert [e["name"] for e in page] == ["C.txt", "a.txt", "b.txt"]
    desc = await resolve(files.list("dir", {"sortBy": {"column": "name", "order": "desc"}}))
    assert [e["name"] for e in desc][:3] == ["sub", "Zeta", "report-2.csv"]
    found = await resolve(files.list("dir", {"search": "REPORT"}))
    assert [e["name"] for e in found] == ["report-1.csv", "report-2.csv"]
    newest = await resolve(files.list("dir", {"sortBy": {"column": "created_at", "order": "desc"}, "limit": 10}))
    files_only = [e["name"] for e in newest if e["id"]]
    assert files_only[0] == "report-2.csv" and files_only[-1] == "b.txt"
    assert await resolve(files.list("dir/sub/")) == await resolve(files.list("dir/sub"))
    await expect_error(lambda: files.list("dir", {"sortBy": {"column": "size"}}), "400")


# ------------------------------------------------------------------------------ objects, as users


async def test_demo_documents_policies_per_user(standin: LocalStandIn, alice: Any, bob: Any) -> None:
    """The demo's "own folder" policies on `documents`: allowed in one's folder, refused across users."""
    mine, theirs = f"{ALICE}/t-{uuid.uuid4().hex[:8]}.txt", f"{BOB}/plan.txt"
    docs = alice.storage.from_("documents")
    try:
        await resolve(docs.upload(mine, b"alice wrote this"))
        assert await resolve(docs.download(mine)) == b"alice wrote this"
        assert await resolve(docs.exists(mine)) is True
        assert await resolve(bob.storage.from_("documents").exists(mine)) is False
        await expect_error(lambda: bob.storage.from_("documents").download(mine), "404", "not_found")
        await expect_error(lambda: docs.download(theirs), "404", "not_found")
        await expect_error(lambda: docs.info(theirs), "404")
        await expect_error(
            lambda: docs.upload(f"{BOB}/intruder.txt", b"x"), "403", "Unauthorized", "row-level security"
        )
        await expect_error(lambda: docs.create_signed_url(theirs, 60), "404")
        root = [e["name"] for e in await resolve(docs.list())]
        assert root == [ALICE]  # bob's folder is invisible to alice
        assert await resolve(docs.list(BOB)) == []
        assert await resolve(docs.remove([theirs])) == []  # refused silently, as Supabase does
        assert await resolve(bob.storage.from_("documents").download(theirs)) == PLAN
        await expect_error(lambda: docs.move(mine, f"{BOB}/stolen.txt"), "403", "Unauthorized")
        await expect_error(lambda: docs.copy(theirs, f"{ALICE}/copied.txt"), "404")
        await expect_error(lambda: bob.storage.from_("documents").move(mine, f"{BOB}/x.txt"), "404")
    finally:
        removed = await resolve(docs.remove([mine]))
    assert [r["name"] for r in removed] == [mine]
    await assert_no_orphans(standin)


async def test_user_move_copy_and_upsert_in_own_folder(alice: Any) -> None:
    docs = alice.storage.from_("documents")
    base = f"{ALICE}/t-{uuid.uuid4().hex[:8]}"
    try:
        await resolve(docs.upload(f"{base}/a.txt", b"1"))
        await resolve(docs.upload(f"{base}/a.txt", b"2", {"upsert": "true"}))  # needs SELECT + UPDATE: granted
        await resolve(docs.move(f"{base}/a.txt", f"{base}/renamed.txt"))
        await resolve(docs.copy(f"{base}/renamed.txt", f"{base}/copy.txt"))
        assert [e["name"] for e in await resolve(docs.list(base))] == ["copy.txt", "renamed.txt"]
        assert await resolve(docs.download(f"{base}/copy.txt")) == b"2"
    finally:
        await resolve(docs.remove([f"{base}/renamed.txt", f"{base}/copy.txt"]))


async def test_supabase_style_policy_loads_and_decides(
    standin: LocalStandIn, folder_policies: str, kind: str, alice: Any, bob: Any, admin: Any
) -> None:
    """Policies comparing owner_id with auth.uid()::text and using storage.foldername(name)."""
    bucket = folder_policies
    a, b = alice.storage.from_(bucket), bob.storage.from_(bucket)
    await resolve(a.upload(f"{ALICE}/avatar.txt", b"alice"))
    await resolve(b.upload(f"{BOB}/avatar.txt", b"bob"))
    await expect_error(lambda: a.upload(f"{BOB}/evil.txt", b"x"), "403", "Unauthorized")
    await expect_error(lambda: a.upload("toplevel.txt", b"x"), "403", "Unauthorized")
    assert await resolve(a.download(f"{ALICE}/avatar.txt")) == b"alice"
    await expect_error(lambda: a.download(f"{BOB}/avatar.txt"), "404")
    await resolve(a.update(f"{ALICE}/avatar.txt", b"alice v2"))
    await expect_error(lambda: b.update(f"{ALICE}/avatar.txt", b"bob was here"), "403")
    assert await resolve(b.remove([f"{ALICE}/avatar.txt"])) == []
    rows = await sql(standin, "select name, owner_id from storage.objects where bucket_id = $1 order by name", bucket)
    assert [(r["name"], r["owner_id"]) for r in rows] == [(f"{ALICE}/avatar.txt", ALICE), (f"{BOB}/avatar.txt", BOB)]
    everything = await resolve(admin.storage.from_(bucket).list())
    assert sorted(e["name"] for e in everything) == sorted([ALICE, BOB])  # service role bypasses RLS
    assert await resolve(a.download(f"{ALICE}/avatar.txt")) == b"alice v2"


async def test_anon_reads_public_bucket_only(standin: LocalStandIn, kind: str) -> None:
    anon = await client(standin, kind)
    assert (await resolve(anon.storage.from_("avatars").download("alice.png")))[:8] == b"\x89PNG\r\n\x1a\n"
    await expect_error(lambda: anon.storage.from_("documents").download(f"{ALICE}/notes.txt"), "404")
    await expect_error(lambda: anon.storage.from_("avatars").upload("anon.png", b"x"), "403", "Unauthorized")
    public_url = await resolve(anon.storage.from_("avatars").get_public_url("alice.png"))
    assert public_url == f"{standin.api_url()}/storage/v1/object/public/avatars/alice.png"
    fetched = httpx.get(public_url)  # no key at all: public objects need none
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    private_url = await resolve(anon.storage.from_("documents").get_public_url(f"{ALICE}/notes.txt"))
    refused = httpx.get(private_url)
    assert refused.status_code == 400 and refused.json()["statusCode"] == "404"
    assert refused.json()["error"] == "Bucket not found"


# ------------------------------------------------------------------------------------ signed URLs


async def test_signed_urls(standin: LocalStandIn, alice: Any) -> None:
    docs = alice.storage.from_("documents")
    signed = await resolve(docs.create_signed_url(f"{ALICE}/notes.txt", 60))
    fetched = httpx.get(signed["signedURL"])  # no auth: the token is the permission
    assert fetched.status_code == 200 and fetched.text.startswith("Alice's notes")
    download = httpx.get(
        (await resolve(docs.create_signed_url(f"{ALICE}/notes.txt", 60, {"download": "n.txt"})))["signedURL"]
    )
    assert download.headers["content-disposition"] == "attachment; filename=n.txt; filename*=UTF-8''n.txt"

    many = await resolve(docs.create_signed_urls([f"{ALICE}/notes.txt", f"{BOB}/plan.txt", f"{ALICE}/nope"], 60))
    assert [m["error"] is None for m in many] == [True, False, False]
    assert many[1]["error"] == "Either the object does not exist or you do not have access to it"
    assert httpx.get(many[0]["signedURL"]).status_code == 200


async def test_signed_url_tokens_checked(standin: LocalStandIn, alice_token: str) -> None:
    secret = standin.keys().jwt_secret
    path = f"documents/{ALICE}/notes.txt"
    url = api(standin, f"/object/sign/{path}")
    now = int(time.time())

    good = mint({"url": path, "iat": now, "exp": now + 60}, secret=secret)
    assert httpx.get(url, params={"token": good}).status_code == 200

    def refused(token: str | None) -> dict[str, Any]:
        res = httpx.get(url, params={"token": token} if token is not None else None)
        assert res.status_code == 400
        return dict(res.json())

    expired = mint({"url": path, "iat": now - 120, "exp": now - 60}, secret=secret)
    assert refused(expired) == {
        "statusCode": "400",
        "code": "InvalidJWT",
        "error": "InvalidJWT",
        "message": "jwt expired",
    }
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert refused(tampered)["message"] == "invalid signature"
    forged = mint({"url": path, "iat": now, "exp": now + 60}, secret="not-the-project-secret-but-long-enough")
    assert refused(forged)["message"] == "invalid signature"
    other = mint({"url": f"documents/{BOB}/plan.txt", "iat": now, "exp": now + 60}, secret=secret)
    assert refused(other) == {
        "statusCode": "400",
        "code": "InvalidSignature",
        "error": "InvalidSignature",
        "message": "Invalid signature",
    }
    assert refused("garbage")["message"] == "jwt malformed"
    assert "token" in refused(None)["message"]

    # A URL the server signed for one second stops working once that second has passed.
    short = httpx.post(api(standin, f"/object/sign/{path}"), json={"expiresIn": 1}, headers=auth(alice_token)).json()[
        "signedURL"
    ]
    deadline = time.monotonic() + 10
    while httpx.get(f"{standin.api_url()}/storage/v1{short}").status_code == 200:
        assert time.monotonic() < deadline, "a 1-second signed URL still works after 10 s"
        await asyncio.sleep(0.2)  # polling the condition (expiry), not a fixed wait
    assert httpx.get(f"{standin.api_url()}/storage/v1{short}").json()["message"] == "jwt expired"
    bad = httpx.post(api(standin, f"/object/sign/{path}"), json={"expiresIn": 0}, headers=auth(alice_token))
    assert bad.status_code == 400 and "expiresIn" in bad.json()["message"]


async def test_signed_upload(standin: LocalStandIn, alice: Any, admin: Any) -> None:
    docs = alice.storage.from_("documents")
    name = f"{ALICE}/t-{uuid.uuid4().hex[:8]}.txt"
    try:
        signed = await resolve(docs.create_signed_upload_url(name))
        assert signed["path"] == name and signed["token"]
        # Anyone holding the token may upload that one path (the anon client here has no user JWT).
        anon = await client(standin, "async")
        res = await anon.storage.from_("documents").upload_to_signed_url(name, signed["token"], b"via token")
        assert res.full_path == f"documents/{name}"
        assert await resolve(docs.download(name)) == b"via token"
        rows = await sql(standin, "select owner_id from storage.objects where bucket_id='documents' and name=$1", name)
        assert rows[0]["owner_id"] == ALICE  # the owner recorded in the token
        await expect_error(
            lambda: anon.storage.from_("documents").upload_to_signed_url(f"{ALICE}/other.txt", signed["token"], b"x"),
            "400",
            "InvalidSignature",
        )
        await expect_error(
            lambda: anon.storage.from_("documents").upload_to_signed_url(name, signed["token"][:-3] + "abc", b"x"),
            "400",
            "InvalidJWT",
        )
        await expect_error(lambda: docs.create_signed_upload_url(f"{BOB}/x.txt"), "403", "Unauthorized")
        # Without upsert in the token, a second upload to the same path is a duplicate.
        await expect_error(
            lambda: anon.storage.from_("documents").upload_to_signed_url(name, signed["token"], b"again"),
            "409",
            "Duplicate",
        )
    finally:
        await resolve(admin.storage.from_("documents").remove([name]))


# -------------------------------------------------------------------------------- limits and names


async def test_bucket_size_and_mime_limits(admin: Any, bucket: str) -> None:
    await resolve(admin.storage.update_bucket(bucket, {"file_size_limit": 10, "allowed_mime_types": ["image/*"]}))
    files = admin.storage.from_(bucket)
    await resolve(files.upload("small.png", b"0123456789", {"content-type": "image/png"}))
    err = await expect_error(
        lambda: files.upload("big.png", b"0123456789A", {"content-type": "image/png"}), "413", "Payload too large"
    )
    assert err.message == "The object exceeded the maximum allowed size"
    err = await expect_error(lambda: files.upload("doc.txt", b"x", {"content-type": "text/plain"}), "415")
    assert (err.code, err.message) == ("invalid_mime_type", "mime type text/plain is not supported")
    assert [e["name"] for e in await resolve(files.list())] == ["small.png"]


async def test_demo_avatars_limits(admin: Any) -> None:
    avatars = admin.storage.from_("avatars")
    await expect_error(lambda: avatars.upload("x.txt", b"text", {"content-type": "text/plain"}), "415")
    await expect_error(
        lambda: avatars.upload("huge.png", b"\0" * (1024 * 1024 + 1), {"content-type": "image/png"}), "413"
    )


async def test_odd_names(admin: Any, bucket: str) -> None:
    files = admin.storage.from_(bucket)
    spaced = "with spaces/and (parens) & more, ok; yes=1+1 @home $5 'q'.txt"
    await resolve(files.upload(spaced, b"spaces"))
    assert await resolve(files.download(spaced)) == b"spaces"
    assert [e["name"] for e in await resolve(files.list("with spaces"))] == [spaced.split("/")[1]]
    signed = await resolve(files.create_signed_url(spaced, 60))
    assert httpx.get(signed["signedURL"]).content == b"spaces"
    longest = "d/" + "n" * (1024 - 2)
    await resolve(files.upload(longest, b"long"))
    assert await resolve(files.download(longest)) == b"long"
    await expect_error(lambda: files.upload(longest + "n", b"x"), "400", "InvalidKey", "longer than 1024 bytes")
    # Supabase accepts only S3-safe ASCII in keys: unicode is refused the same way there.
    err = await expect_error(lambda: files.upload("café/ünïcødé.txt", b"x"), "400", "InvalidKey")
    assert err.message.startswith("Invalid key: café/")
    await expect_error(lambda: files.upload("tab\there.txt", b"x"), "400", "InvalidKey")
    with pytest.raises(ValueError, match="dot segments"):
        await resolve(files.upload("a/../b.txt", b"x"))  # storage3 refuses before sending


async def test_empty_file(admin: Any, bucket: str) -> None:
    files = admin.storage.from_(bucket)
    await resolve(files.upload("empty.bin", b"", {"content-type": "application/octet-stream"}))
    assert await resolve(files.download("empty.bin")) == b""
    assert (await resolve(files.info("empty.bin")))["size"] == 0


async def test_raw_requests_cannot_escape_or_smuggle(standin: LocalStandIn, service_key: str, bucket: str) -> None:
    """Requests storage3 would never send: encoded dot segments, absolute and empty keys, control bytes."""
    headers = auth(service_key)
    sentinel_dir = standin.data_dir.parent
    before_outside = {p for p in sentinel_dir.rglob("*") if standin.data_dir not in p.parents and p != standin.data_dir}
    repo_before = set(os.listdir(Path.cwd()))
    attempts = [
        "%2e%2e/%2e%2e/escaped.txt",
        "a/%2e%2e/%2e%2e/%2e%2e/escaped.txt",
        "%2E/here.txt",
        "%2Fetc%2Fescaped",
        "/absolute.txt",
        "tab%09here.txt",
        "carriage%0Dreturn.txt",
        "unit%1Fseparator.txt",
        "nul%00byte.txt",
        "back%5Cslash.txt",
        "%2e%2e",
    ]
    for attempt in attempts:
        res = httpx.post(
            f"{standin.api_url()}/storage/v1/object/{bucket}/{attempt}",
            headers=headers,
            files={"file": ("x", b"payload", "text/plain")},
        )
        assert res.status_code == 400, (attempt, res.text)
        assert res.json()["code"] == "InvalidKey", (attempt, res.json())
    # A decoded newline does not even reach the Storage app (the API's /storage/v1 mount does not match it).
    newline = httpx.post(
        f"{standin.api_url()}/storage/v1/object/{bucket}/line%0Abreak.txt", headers=headers, content=b"x"
    )
    assert newline.status_code in (400, 404)
    raw_empty = httpx.post(f"{standin.api_url()}/storage/v1/object/{bucket}/", headers=headers, content=b"x")
    assert raw_empty.status_code == 400 and raw_empty.json()["code"] == "InvalidKey"
    moved = httpx.post(
        api(standin, "/object/move"),
        headers=headers,
        json={"bucketId": "documents", "sourceKey": f"{ALICE}/notes.txt", "destinationKey": "../../notes.txt"},
    )
    assert moved.json()["code"] == "InvalidKey"
    # Reading by a traversal key is just a lookup of a name that does not exist.
    read = httpx.get(f"{standin.api_url()}/storage/v1/object/{bucket}/%2e%2e/%2e%2e/keys.json", headers=headers)
    assert read.status_code == 400 and read.json()["statusCode"] == "404"
    after_outside = {p for p in sentinel_dir.rglob("*") if standin.data_dir not in p.parents and p != standin.data_dir}
    assert after_outside == before_outside
    assert set(os.listdir(Path.cwd())) == repo_before
    assert all(len(name) == 32 and int(name, 16) >= 0 for name in blob_files(standin))
    assert await sql(standin, "select 1 from storage.objects where bucket_id = $1", bucket) == []


async def test_auth_header_checks(standin: LocalStandIn, alice_token: str) -> None:
    url = api(standin, "/bucket")
    missing = httpx.get(url)
    assert missing.status_code == 400 and missing.json()["statusCode"] == "403"
    assert missing.json()["message"] == "jwt must be provided"
    expired = user_token(standin, ALICE, "alice@example.com", exp=int(time.time()) - 60)
    assert httpx.get(url, headers=auth(expired)).json()["message"] == "jwt expired"
    forged = mint(
        access_token_claims(ALICE, iss="x", role="service_role"),
        secret="a-guessed-secret-that-is-long-enough-for-hs256",
    )
    assert httpx.get(url, headers=auth(forged)).json()["message"] == "invalid signature"
    assert httpx.get(url, headers=auth(alice_token)).json() == []
    # An ES256 token signed with the stand-in's asymmetric key (newer projects) is accepted too.
    keys = standin.keys()
    es = mint(access_token_claims(ALICE, iss="x"), private_key=keys.es256_private_key, kid=str(keys.es256_jwk["kid"]))
    res = httpx.get(api(standin, f"/object/info/documents/{ALICE}/notes.txt"), headers=auth(es))
    assert res.status_code == 200 and res.json()["name"] == f"{ALICE}/notes.txt"


async def test_head_and_download_headers(standin: LocalStandIn, alice_token: str) -> None:
    url = api(standin, f"/object/documents/{ALICE}/notes.txt")
    head = httpx.head(url, headers=auth(alice_token))
    body = httpx.get(url, headers=auth(alice_token))
    assert head.status_code == body.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(body.content))
    assert head.headers["etag"] == f'"{hashlib.md5(body.content).hexdigest()}"'
    assert body.headers["content-type"] == "text/plain"
    assert body.headers["cache-control"] == "max-age=3600"
    assert httpx.head(api(standin, f"/object/documents/{BOB}/plan.txt"), headers=auth(alice_token)).status_code == 400
    unknown = httpx.get(api(standin, "/no/such/route"))
    assert unknown.status_code == 404 and unknown.json()["error"] == "Not Found"


# ------------------------------------------------------------------------------ concurrency, size


async def test_concurrent_uploads_of_one_key(standin: LocalStandIn, service_key: str, bucket: str) -> None:
    clients = [await client(standin, "async", key=service_key) for _ in range(8)]
    payloads = [f"writer {i} ".encode() * 1000 for i in range(8)]

    async def put(i: int, upsert: bool) -> str:
        try:
            await clients[i].storage.from_(bucket).upload("race.txt", payloads[i], {"upsert": str(upsert).lower()})
            return "ok"
        except StorageApiError as exc:
            return str(exc.code)

    outcomes = await asyncio.gather(*(put(i, False) for i in range(8)))
    assert sorted(outcomes) == ["Duplicate"] * 7 + ["ok"]
    winner = await clients[0].storage.from_(bucket).download("race.txt")
    assert winner == payloads[outcomes.index("ok")]
    await assert_no_orphans(standin)

    outcomes = await asyncio.gather(*(put(i, True) for i in range(8)))
    assert outcomes == ["ok"] * 8
    assert await clients[0].storage.from_(bucket).download("race.txt") in payloads
    rows = await sql(standin, "select count(*) as n from storage.objects where bucket_id = $1", bucket)
    assert rows[0]["n"] == 1
    await assert_no_orphans(standin)  # every replaced version's blob was removed


async def test_upload_over_the_global_limit_leaves_nothing(
    standin: LocalStandIn, service_key: str, bucket: str
) -> None:
    """Supabase's default 50 MiB limit: a 100 MB upload is refused, and no partial file stays behind."""
    big = Path(standin.data_dir.parent / f"big-{uuid.uuid4().hex[:8]}.bin")
    with open(big, "wb") as fh:
        fh.truncate(100 * 1000 * 1000)
    admin = await client(standin, "async", key=service_key)
    try:
        err = await expect_error(
            lambda: admin.storage.from_(bucket).upload("big.bin", big, {"content-type": "application/octet-stream"}),
            "413",
            "Payload too large",
        )
        assert "maximum allowed size" in err.message
    finally:
        big.unlink()
    assert not list((standin.storage_dir / "objects").glob("*.part"))
    await assert_no_orphans(standin)


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.slow
async def test_100_mb_upload_streams_to_disk(tmp_path: Path) -> None:
    """With the project limit raised, 100 MB goes through without the API holding it in memory."""
    own = LocalStandIn(tmp_path / "local")
    own.start()
    try:
        (own.storage_dir / "settings.json").write_text(json.dumps({"file_size_limit": 200 * 1000 * 1000}))
        api_pid = own.api_pid()
        assert api_pid is not None
        admin = await client(own, "async", key=own.keys().service_role_key)
        await admin.storage.create_bucket("big")
        data_file = tmp_path / "big.bin"
        digest = hashlib.md5()
        with open(data_file, "wb") as fh:
            block = os.urandom(1 << 20)
            for i in range(100):
                chunk = block[i:] + block[:i]
                digest.update(chunk)
                fh.write(chunk)
        before = _peak_rss_kb(api_pid)
        await admin.storage.from_("big").upload("big.bin", data_file, {"content-type": "application/octet-stream"})
        growth_mb = (_peak_rss_kb(api_pid) - before) / 1024
        assert growth_mb < 40, f"the API's peak memory grew by {growth_mb:.0f} MB for a 100 MB upload"
        info = await admin.storage.from_("big").info("big.bin")
        assert info["size"] == 100 * (1 << 20)
        assert info["etag"] == f'"{digest.hexdigest()}"'
        async with httpx.AsyncClient() as http:
            got = hashlib.md5()
            async with http.stream(
                "GET", api(own, "/object/big/big.bin"), headers=auth(own.keys().service_role_key)
            ) as res:
                async for part in res.aiter_bytes():
                    got.update(part)
        assert got.hexdigest() == digest.hexdigest()
        await assert_no_orphans(own)
    finally:
        own.destroy()


async def test_error_bodies_have_supabase_shape(standin: LocalStandIn, service_key: str) -> None:
    checks: list[tuple[Callable[[], httpx.Response], str, str]] = [
        (lambda: httpx.get(api(standin, "/bucket/nope"), headers=auth(service_key)), "404", "Bucket not found"),
        (
            lambda: httpx.get(api(standin, "/object/documents/nope.txt"), headers=auth(service_key)),
            "404",
            "not_found",
        ),
        (lambda: httpx.post(api(standin, "/bucket"), headers=auth(service_key), content=b"{"), "400", "Bad Request"),
    ]
    for call, status, error in checks:
        res = call()
        body = res.json()
        assert res.status_code == 400 and set(body) == {"statusCode", "code", "error", "message"}
        assert (body["statusCode"], body["error"]) == (status, error)
