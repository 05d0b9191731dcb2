"""workbench.storage: admin and identity clients on the real supabase client, against the local API."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from workbench import storage as st
from workbench.backend.tokens import access_token_claims, mint
from workbench.core.identity import Identity, user_identity
from workbench.core.settings import Settings
from workbench.local.demo import DEMO_DIR
from workbench.local.standin import LocalStandIn

ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"


async def identity_of(standin: LocalStandIn, who: str) -> Identity:
    conn = await asyncpg.connect(standin.dsn())
    try:
        return await user_identity(conn, who)
    finally:
        await conn.close()


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[st.StorageClient]:
    client = await st.admin_client(settings)
    yield client
    await client.aclose()


@pytest.fixture
async def alice(settings: Settings, standin: LocalStandIn) -> AsyncIterator[st.StorageClient]:
    client = await st.client_as(settings, await identity_of(standin, "alice@example.com"))
    yield client
    await client.aclose()


@pytest.fixture
async def bucket(admin: st.StorageClient) -> AsyncIterator[str]:
    name = f"t-{uuid.uuid4().hex[:12]}"
    await admin.storage.create_bucket(name)
    yield name
    await admin.storage.empty_bucket(name)
    await admin.storage.delete_bucket(name)


async def test_clients_and_who_they_act_as(settings: Settings, standin: LocalStandIn) -> None:
    admin = await st.admin_client(settings)
    assert admin.role == "service_role"
    assert {b.id for b in await st.list_buckets(admin)} >= {"avatars", "documents"}
    for same in (None, Identity.none(), Identity.service_role()):
        assert (await st.client_as(settings, same)).role == "service_role"
    anon = await st.client_as(settings, Identity.anon())
    assert anon.role == "anon" and await st.list_buckets(anon) == []
    assert (await st.download(anon, "avatars", "alice.png")).startswith(b"\x89PNG")
    alice = await st.client_as(settings, await identity_of(standin, "alice@example.com"))
    assert alice.label == "alice@example.com"
    listing = await st.list_folder(alice, "documents")
    assert [e.name for e in listing.entries] == [ALICE]
    # keys never show up in a repr (they are JWTs anyone could replay)
    for client in (admin, anon, alice):
        assert settings.service_role_key is not None and settings.anon_key is not None
        assert settings.service_role_key.get_secret_value() not in repr(client)
        assert settings.anon_key.get_secret_value() not in repr(client)


async def test_client_from_a_signed_in_users_token(settings: Settings, standin: LocalStandIn) -> None:
    """For a project whose JWT secret we lack: the user's own access token."""
    token = mint(access_token_claims(BOB, email="bob@example.com", iss="x"), secret=standin.keys().jwt_secret)
    bob = await st.client_as(settings.model_copy(update={"jwt_secret": None}), access_token=token)
    assert [e.name for e in (await st.list_folder(bob, "documents")).entries] == [BOB]
    with pytest.raises(st.StorageError, match="SUPABASE_JWT_SECRET"):
        await st.client_as(
            settings.model_copy(update={"jwt_secret": None}),
            Identity.from_claims({"role": "authenticated", "sub": BOB}),
        )


async def test_listing_pages_sort_and_search(admin: st.StorageClient, bucket: str) -> None:
    for i in range(7):
        await st.upload(admin, bucket, f"f/file-{i}.txt", f"{i}".encode())
    await st.upload(admin, bucket, "f/sub/deeper.txt", b"d")
    first = await st.list_folder(admin, bucket, "f", limit=3)
    assert [e.name for e in first.entries] == ["sub", "file-0.txt", "file-1.txt"]
    assert first.entries[0].is_folder and first.entries[0].path == "f/sub" and first.entries[0].size is None
    assert first.has_more
    last = await st.list_folder(admin, bucket, "f/", limit=3, offset=6)
    assert [e.name for e in last.entries] == ["file-5.txt", "file-6.txt"] and not last.has_more
    newest = await st.list_folder(admin, bucket, "f", sort="created_at", order="desc", limit=2)
    assert [e.name for e in newest.entries] == ["sub", "file-6.txt"]
    found = await st.list_folder(admin, bucket, "f", search="FILE-3")
    assert [(e.name, e.size, e.mimetype) for e in found.entries] == [("file-3.txt", 1, "text/plain")]
    assert found.entries[0].updated_at is not None
    with pytest.raises(st.StorageError, match="Cannot sort by 'size'"):
        await st.list_folder(admin, bucket, "f", sort="size")


async def test_upload_sources_and_progress(admin: st.StorageClient, bucket: str, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    payload = b"x" * 300_000
    key = await st.upload(admin, bucket, "p/big.bin", payload, progress=lambda s, t: seen.append((s, t)))
    assert key == f"{bucket}/p/big.bin"
    assert seen[-1] == (300_000, 300_000)
    assert [s for s, _ in seen] == sorted(s for s, _ in seen) and len(seen) > 1
    local = tmp_path / "doc.json"
    local.write_text('{"a": 1}')
    await st.upload(admin, bucket, "p/doc.json", local)
    assert (await st.info(admin, bucket, "p/doc.json"))["content_type"] == "application/json"
    await st.upload(admin, bucket, "p/stream.txt", io.BytesIO(b"from a file object"))
    assert await st.download(admin, bucket, "p/stream.txt") == b"from a file object"
    with pytest.raises(st.StorageError, match=r"already exists.*upsert=True"):
        await st.upload(admin, bucket, "p/stream.txt", b"again")
    await st.upload(admin, bucket, "p/stream.txt", b"replaced", upsert=True)
    saved = await st.download_to(admin, bucket, "p/stream.txt", tmp_path)
    assert saved == tmp_path / "stream.txt" and saved.read_bytes() == b"replaced"


async def test_upload_many_reports_each_file(alice: st.StorageClient, admin: st.StorageClient) -> None:
    seen: list[tuple[int, int]] = []
    folder = f"{ALICE}/t-{uuid.uuid4().hex[:8]}"
    results = await st.upload_many(
        alice,
        "documents",
        folder,
        [("a.txt", b"aaa"), ("../escape.txt", b"bb"), ("c.csv", b"x,y\n1,2\n", "text/csv")],
        progress=lambda s, t: seen.append((s, t)),
    )
    try:
        assert [(r.path.rsplit("/", 1)[-1], r.ok) for r in results] == [
            ("a.txt", True),
            ("escape.txt", False),
            ("c.csv", True),
        ]
        assert results[1].error and "Fix" in results[1].error
        assert seen[-1] == (13, 13)
        refused = await st.upload_many(alice, "documents", BOB, [("x.txt", b"x")])
        assert not refused[0].ok and "alice@example.com may not upload" in (refused[0].error or "")
        assert "policy on storage.objects" in (refused[0].error or "")
    finally:
        await st.delete(admin, "documents", [f"{folder}/a.txt", f"{folder}/c.csv"])


async def test_errors_are_explained(alice: st.StorageClient, admin: st.StorageClient, bucket: str) -> None:
    with pytest.raises(st.StorageError, match=r"was not found for alice@example.com.*select policy") as info:
        await st.download(alice, "documents", f"{BOB}/plan.txt")
    assert info.value.status == "404"
    with pytest.raises(st.StorageError, match="Bucket 'nope' does not exist"):
        await st.download(admin, "nope", "file.txt")
    assert (await st.list_folder(admin, "nope")).entries == []  # as on Supabase: listing does not check
    with pytest.raises(st.StorageError, match=r"Supabase accepts keys of ASCII"):
        await st.upload(admin, bucket, "naïve.txt", b"x")
    await admin.storage.update_bucket(bucket, {"file_size_limit": 2, "allowed_mime_types": ["text/plain"]})
    with pytest.raises(st.StorageError, match="too large.*file_size_limit"):
        await st.upload(admin, bucket, "big.txt", b"123")
    with pytest.raises(st.StorageError, match="allowed_mime_types"):
        await st.upload(admin, bucket, "pic.png", b"1")
    with pytest.raises(st.StorageError, match="expires_in"):
        await st.signed_url(admin, bucket, "x", 0)


async def test_signed_and_public_urls(alice: st.StorageClient, admin: st.StorageClient) -> None:
    url = await st.signed_url(alice, "documents", f"{ALICE}/notes.txt", 120)
    assert httpx.get(url).text.startswith("Alice's notes")
    attachment = await st.signed_url(alice, "documents", f"{ALICE}/notes.txt", 120, download=True)
    assert "attachment" in httpx.get(attachment).headers["content-disposition"]
    with pytest.raises(st.StorageError, match="not found for alice"):
        await st.signed_url(alice, "documents", f"{BOB}/plan.txt", 120)
    public = await st.public_url(admin, "avatars", "alice.png")
    assert httpx.get(public).status_code == 200


async def test_move_rename_delete(alice: st.StorageClient, admin: st.StorageClient) -> None:
    base = f"{ALICE}/t-{uuid.uuid4().hex[:8]}"
    await st.upload(alice, "documents", f"{base}/a.txt", b"a")
    assert await st.rename(alice, "documents", f"{base}/a.txt", "b.txt") == f"{base}/b.txt"
    assert await st.move(alice, "documents", f"{base}/b.txt", f"{base}/sub/c.txt") == f"{base}/sub/c.txt"
    with pytest.raises(st.StorageError, match="not a file name"):
        await st.rename(alice, "documents", f"{base}/sub/c.txt", "x/y.txt")
    with pytest.raises(st.StorageError, match="may not move"):
        await st.move(alice, "documents", f"{base}/sub/c.txt", f"{BOB}/c.txt")
    result = await st.delete(alice, "documents", [f"{base}/sub/c.txt", f"{BOB}/plan.txt"])
    assert result == st.DeleteResult(deleted=[f"{base}/sub/c.txt"], refused=[f"{BOB}/plan.txt"])
    assert await st.download(admin, "documents", f"{BOB}/plan.txt")  # still there


async def test_previews(admin: st.StorageClient, bucket: str) -> None:
    image = await st.preview(admin, "avatars", "alice.png")
    assert image.kind == "image" and image.data == (DEMO_DIR / "files" / "avatar.png").read_bytes()
    table = await st.preview(admin, "documents", f"{ALICE}/reports/tasks.csv")
    assert table.kind == "csv" and table.rows is not None
    assert table.rows[0] == next(iter((DEMO_DIR / "files" / "tasks.csv").read_text().splitlines())).split(",")
    text = await st.preview(admin, "documents", f"{ALICE}/notes.txt")
    assert text.kind == "text" and text.text is not None and text.text.startswith("Alice's notes")
    await st.upload(admin, bucket, "d.json", json.dumps({"b": [1, 2]}).encode())
    doc = await st.preview(admin, bucket, "d.json")
    assert doc.kind == "json" and doc.text == '{\n  "b": [\n    1,\n    2\n  ]\n}'
    await st.upload(admin, bucket, "broken.json", b"{nope")
    assert (await st.preview(admin, bucket, "broken.json")).note.startswith("not valid JSON")
    await st.upload(admin, bucket, "blob.bin", bytes(range(256)))
    assert (await st.preview(admin, bucket, "blob.bin")).kind == "binary"
    await st.upload(admin, bucket, "many.csv", "".join(f"{i},x\n" for i in range(1000)).encode())
    many = await st.preview(admin, bucket, "many.csv")
    assert many.rows is not None and len(many.rows) == st.PREVIEW_ROWS and many.note == "first 200 rows"
    big = await st.preview(admin, "avatars", "alice.png", max_bytes=100)
    assert big.kind == "too_large" and big.data is None and "preview limit" in big.note


async def test_expired_identity_claims_are_refreshed(settings: Settings, standin: LocalStandIn) -> None:
    """An Identity made long ago still works: the token is minted fresh from its claims."""
    old = await identity_of(standin, "alice@example.com")
    stale = Identity(role=old.role, claims=dict(old.claims or {}) | {"exp": int(time.time()) - 3600}, label=old.label)
    client = await st.client_as(settings, stale)
    assert (await st.list_folder(client, "documents")).entries[0].name == ALICE
