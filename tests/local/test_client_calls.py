"""The official client's ordinary Auth calls (sign-up, anonymous sign-in, update_user, the mail flows)
against the local stand-in, sync and async, errors included; mails are read from the local inbox."""

from __future__ import annotations

import io
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import jwt
import pytest
from supabase import AsyncClientOptions, Client, ClientOptions, acreate_client, create_client
from supabase_auth.errors import AuthApiError, AuthWeakPasswordError

from workbench.core.identity import Identity
from workbench.core.impersonation import apply_statement
from workbench.local.auth_api import AuthSettings, load_auth_settings, save_auth_settings
from workbench.local.inbox import Inbox
from workbench.local.standin import LocalStandIn

PASSWORD = "correct-horse-42"


def client(standin: LocalStandIn, key: str | None = None) -> Client:
    return create_client(
        standin.api_url(), key or standin.keys().anon_key, options=ClientOptions(auto_refresh_token=False)
    )


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
def auth_settings(standin: LocalStandIn) -> Iterator[Any]:
    """Change the stand-in's Auth settings for one test; the defaults come back afterwards."""

    def change(**changes: Any) -> AuthSettings:
        return save_auth_settings(standin.data_dir, **changes)

    yield change
    save_auth_settings(standin.data_dir, **vars(AuthSettings()))


@pytest.fixture
def inbox(standin: LocalStandIn) -> Inbox:
    return Inbox(standin.data_dir)


@pytest.fixture
def email(standin: LocalStandIn) -> Iterator[str]:
    """A unique address; its user is deleted afterwards (the stand-in is shared by the session)."""
    address = f"wb-calls-{uuid.uuid4().hex[:10]}@example.com"
    yield address
    admin = client(standin, standin.keys().service_role_key)
    for user in admin.auth.admin.list_users(per_page=1000):
        if user.email in (address, "new-" + address):
            admin.auth.admin.delete_user(user.id)


@pytest.fixture
async def db(standin: LocalStandIn) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(standin.dsn())
    yield conn
    await conn.close()


# ---------------------------------------------------------------------------------------------- sign-up


def test_sign_up_with_autoconfirm_returns_a_session(standin: LocalStandIn, email: str) -> None:
    assert load_auth_settings(standin.data_dir).autoconfirm is True  # the CLI's local default
    c = client(standin)
    res = c.auth.sign_up({"email": email, "password": PASSWORD, "options": {"data": {"plan": "free"}}})
    assert res.session is not None and res.user is not None
    assert res.user.email == email and res.user.email_confirmed_at is not None
    claims = claims_of(res.session.access_token)
    assert claims["email"] == email and claims["user_metadata"] == {"plan": "free"}
    assert claims["is_anonymous"] is False and claims["role"] == "authenticated"
    # The new user can sign in with that password.
    again = client(standin).auth.sign_in_with_password({"email": email, "password": PASSWORD})
    assert again.user is not None and again.user.id == res.user.id


def test_sign_up_errors_in_gotrue_shape(standin: LocalStandIn, email: str) -> None:
    c = client(standin)
    c.auth.sign_up({"email": email, "password": PASSWORD})
    with pytest.raises(AuthApiError) as dup:
        client(standin).auth.sign_up({"email": email, "password": PASSWORD})
    assert (dup.value.status, dup.value.code) == (422, "user_already_exists")
    assert dup.value.message == "User already registered"
    with pytest.raises(AuthWeakPasswordError) as weak:
        client(standin).auth.sign_up({"email": "other-" + email, "password": "123"})
    assert (weak.value.status, weak.value.code, weak.value.reasons) == (422, "weak_password", ["length"])
    with pytest.raises(AuthApiError) as bad:
        client(standin).auth.sign_up({"email": "not-an-address", "password": PASSWORD})
    assert (bad.value.status, bad.value.code) == (400, "validation_failed")


async def test_sign_up_without_autoconfirm_waits_for_the_inbox(
    standin: LocalStandIn, email: str, auth_settings: Any, inbox: Inbox
) -> None:
    auth_settings(autoconfirm=False)
    c = await acreate_client(
        standin.api_url(), standin.keys().anon_key, options=AsyncClientOptions(auto_refresh_token=False)
    )
    res = await c.auth.sign_up({"email": email, "password": PASSWORD})
    assert res.session is None and res.user is not None and res.user.email_confirmed_at is None
    with pytest.raises(AuthApiError) as unconfirmed:
        await c.auth.sign_in_with_password({"email": email, "password": PASSWORD})
    assert unconfirmed.value.code == "email_not_confirmed"

    mail = inbox.latest(email, "signup")
    assert len(mail.otp) == 6 and mail.otp not in repr(mail) and mail.token_hash not in repr(mail)
    # Private: the folder and each message are the owner's only.
    assert stat.S_IMODE(inbox.path.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in inbox.path.glob("*.json"))

    with pytest.raises(AuthApiError) as wrong:
        await c.auth.verify_otp(
            {"email": email, "token": "000000" if mail.otp != "000000" else "111111", "type": "signup"}
        )
    assert (wrong.value.status, wrong.value.code) == (403, "otp_expired")
    # resend: a new code, and the earlier one stops working.
    await c.auth.resend({"type": "signup", "email": email})
    newer = inbox.latest(email, "signup")
    assert newer.id != mail.id and newer.token_hash != mail.token_hash
    with pytest.raises(AuthApiError) as stale:
        await c.auth.verify_otp({"token_hash": mail.token_hash, "type": "signup"})
    assert stale.value.code == "otp_expired"
    mail = newer
    verified = await c.auth.verify_otp({"email": email, "token": mail.otp, "type": "signup"})
    assert verified.session is not None and verified.user is not None
    assert verified.user.email_confirmed_at is not None
    with pytest.raises(AuthApiError) as done:
        await c.auth.resend({"type": "signup", "email": email})
    assert done.value.status == 422
    # A code works once.
    with pytest.raises(AuthApiError) as reused:
        await c.auth.verify_otp({"email": email, "token": mail.otp, "type": "signup"})
    assert reused.value.code == "otp_expired"
    # A confirmed address signing up again gets GoTrue's look-alike answer, not a leak that it exists.
    again = await c.auth.sign_up({"email": email, "password": PASSWORD})
    assert again.session is None and again.user is not None and again.user.id != verified.user.id


# ---------------------------------------------------------------------------------------------- anonymous


async def test_anonymous_sign_in_and_is_anonymous_in_a_policy(
    standin: LocalStandIn, db: asyncpg.Connection, auth_settings: Any
) -> None:
    c = client(standin)
    res = c.auth.sign_in_anonymously({"options": {"data": {"nickname": "guest"}}})
    assert res.session is not None and res.user is not None and res.user.is_anonymous is True
    claims = claims_of(res.session.access_token)
    assert claims["is_anonymous"] is True and claims["role"] == "authenticated" and claims["email"] == ""
    # auth.jwt() ->> 'is_anonymous' is what real policies test: the claim reaches PostgreSQL as sent.
    async with db.transaction():
        sql, args = apply_statement(Identity.from_claims(claims))
        await db.execute(sql, *args)
        assert await db.fetchval("select auth.jwt() ->> 'is_anonymous'") == "true"
        assert str(await db.fetchval("select auth.uid()")) == res.user.id
    await db.execute("delete from auth.users where id = $1", uuid.UUID(res.user.id))

    auth_settings(anonymous_sign_ins=False)
    with pytest.raises(AuthApiError) as off:
        client(standin).auth.sign_in_anonymously()
    assert (off.value.status, off.value.code) == (422, "anonymous_provider_disabled")


# ---------------------------------------------------------------------------------------------- PUT /user


def test_update_user_metadata_reaches_the_next_token(standin: LocalStandIn, email: str) -> None:
    c = client(standin)
    c.auth.sign_up({"email": email, "password": PASSWORD, "options": {"data": {"plan": "free"}}})
    updated = c.auth.update_user({"data": {"plan": "pro", "team": "red"}})
    assert updated.user.user_metadata == {"plan": "pro", "team": "red"}
    refreshed = c.auth.refresh_session()
    assert refreshed.session is not None
    assert claims_of(refreshed.session.access_token)["user_metadata"] == {"plan": "pro", "team": "red"}

    # Password change: the old one stops working, the same one again is refused as GoTrue refuses it.
    c.auth.update_user({"password": PASSWORD + "-new"})
    with pytest.raises(AuthApiError) as old:
        client(standin).auth.sign_in_with_password({"email": email, "password": PASSWORD})
    assert old.value.code == "invalid_credentials"
    with pytest.raises(AuthApiError) as same:
        c.auth.update_user({"password": PASSWORD + "-new"})
    assert (same.value.status, same.value.code) == (422, "same_password")
    with pytest.raises(AuthWeakPasswordError):
        c.auth.update_user({"password": "x"})
    with pytest.raises(AuthApiError) as taken:
        c.auth.update_user({"email": "alice@example.com"})
    assert (taken.value.status, taken.value.code) == (422, "email_exists")


def test_email_change_is_confirmed_through_the_inbox(
    standin: LocalStandIn, email: str, auth_settings: Any, inbox: Inbox
) -> None:
    c = client(standin)
    c.auth.sign_up({"email": email, "password": PASSWORD})
    auth_settings(autoconfirm=False)
    new = "new-" + email
    res = c.auth.update_user({"email": new})
    assert res.user.email == email and res.user.new_email == new  # nothing changes before the mail
    mail = inbox.latest(new, "email_change")
    verified = c.auth.verify_otp({"token_hash": mail.token_hash, "type": "email_change"})
    assert verified.user is not None and verified.user.email == new
    assert client(standin).auth.sign_in_with_password({"email": new, "password": PASSWORD}).user is not None


# ---------------------------------------------------------------------------------------------- mail flows


def test_reset_password_end_to_end(standin: LocalStandIn, email: str, inbox: Inbox) -> None:
    client(standin).auth.sign_up({"email": email, "password": PASSWORD})
    c = client(standin)
    c.auth.reset_password_for_email(email, {"redirect_to": "http://127.0.0.1:3000/reset"})
    mail = inbox.latest(email, "recovery")
    assert mail.redirect_to == "http://127.0.0.1:3000/reset" and mail.token_hash in mail.link
    res = c.auth.verify_otp({"token_hash": mail.token_hash, "type": "recovery"})
    assert res.session is not None
    c.auth.update_user({"password": "brand-new-password"})
    assert client(standin).auth.sign_in_with_password({"email": email, "password": "brand-new-password"}).user

    # An unknown address gets the same empty answer and no mail (no probing who has an account).
    before = len(inbox.messages())
    c.auth.reset_password_for_email("nobody-" + email)
    assert len(inbox.messages()) == before


def test_magic_link_followed_like_a_browser(standin: LocalStandIn, email: str, inbox: Inbox) -> None:
    # The implicit flow: the link redirects to the site with the session in the fragment.
    c = create_client(
        standin.api_url(),
        standin.keys().anon_key,
        options=ClientOptions(auto_refresh_token=False, flow_type="implicit"),
    )
    c.auth.sign_in_with_otp({"email": email})  # creates the user
    mail = inbox.latest(email, "magiclink")
    answer = httpx.get(mail.link, follow_redirects=False)
    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == "http://127.0.0.1:3000"
    fragment = {k: v[0] for k, v in parse_qs(location.fragment).items()}
    assert fragment["type"] == "magiclink" and fragment["token_type"] == "bearer"
    session = c.auth.set_session(fragment["access_token"], fragment["refresh_token"])
    assert session.user is not None and session.user.email == email
    # The link works once; the second visit lands with the error in the fragment.
    second = urlsplit(httpx.get(mail.link, follow_redirects=False).headers["location"])
    assert parse_qs(second.fragment)["error_code"] == ["otp_expired"]

    # The PKCE flow (supabase-py's default): the link hands out a code the same client exchanges.
    pkce = client(standin)
    pkce.auth.sign_in_with_otp({"email": email})
    link = inbox.latest(email, "magiclink").link
    code = parse_qs(urlsplit(httpx.get(link, follow_redirects=False).headers["location"]).query)["code"][0]
    exchanged = pkce.auth.exchange_code_for_session({"auth_code": code})
    assert exchanged.session is not None and exchanged.user is not None and exchanged.user.email == email
    with pytest.raises(AuthApiError) as stranger:  # another client lacks the verifier
        client(standin).auth.exchange_code_for_session({"auth_code": code, "code_verifier": "x" * 43})
    assert stranger.value.code in ("flow_state_not_found", "bad_code_verifier")

    with pytest.raises(AuthApiError) as no_signup:
        c.auth.sign_in_with_otp({"email": "nobody-" + email, "options": {"should_create_user": False}})
    assert (no_signup.value.status, no_signup.value.code) == (422, "otp_disabled")


async def test_invite_and_generate_link_as_service_role(standin: LocalStandIn, email: str, inbox: Inbox) -> None:
    admin = await acreate_client(
        standin.api_url(), standin.keys().service_role_key, options=AsyncClientOptions(auto_refresh_token=False)
    )
    invited = await admin.auth.admin.invite_user_by_email(email, {"data": {"team": "blue"}})
    assert invited.user.email == email and invited.user.invited_at is not None
    mail = inbox.latest(email, "invite")
    anon = client(standin)
    res = anon.auth.verify_otp({"email": email, "token": mail.otp, "type": "invite"})
    assert res.session is not None and res.user is not None and res.user.user_metadata == {"team": "blue"}
    anon.auth.update_user({"password": PASSWORD})  # what an invite page does next

    with pytest.raises(AuthApiError) as again:
        await admin.auth.admin.invite_user_by_email(email)
    assert (again.value.status, again.value.code) == (422, "email_exists")

    before = len(inbox.messages())
    link = await admin.auth.admin.generate_link({"type": "magiclink", "email": email})
    assert len(inbox.messages()) == before  # generate_link hands the link back and mails nothing
    assert link.properties.verification_type == "magiclink" and link.user.email == email
    assert link.properties.hashed_token in link.properties.action_link
    signed_in = client(standin).auth.verify_otp({"token_hash": link.properties.hashed_token, "type": "magiclink"})
    assert signed_in.user is not None and signed_in.user.email == email

    with pytest.raises(AuthApiError) as missing:
        await admin.auth.admin.generate_link({"type": "recovery", "email": "nobody-" + email})
    assert (missing.value.status, missing.value.code) == (404, "user_not_found")
    # Only the service role may invite.
    with pytest.raises(AuthApiError) as not_admin:
        client(standin).auth.admin.invite_user_by_email("x-" + email)
    assert not_admin.value.status in (401, 403)


def test_inbox_latest_names_what_it_holds(standin: LocalStandIn, email: str, inbox: Inbox) -> None:
    client(standin).auth.sign_in_with_otp({"email": email})
    with pytest.raises(LookupError, match="magiclink"):
        inbox.latest(email, "recovery")
    with pytest.raises(LookupError, match="holds none"):
        inbox.latest("nobody-" + email)


# ---------------------------------------------------------------------------------------------- storage


def png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def image_size(data: bytes) -> tuple[int, int, str]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.width, im.height, str(im.format)


@pytest.fixture
def public_bucket(standin: LocalStandIn) -> Iterator[str]:
    """A public bucket with a small tree of files, removed afterwards."""
    admin = client(standin, standin.keys().service_role_key)
    name = f"calls-{uuid.uuid4().hex[:10]}"
    admin.storage.create_bucket(name, options={"public": True})
    files = admin.storage.from_(name)
    for key in ("a.txt", "b.txt", "docs/one.txt", "docs/two.txt", "docs/deep/three.txt", "z.txt"):
        files.upload(key, key.encode(), {"content-type": "text/plain"})
    files.upload("pics/red.png", png(400, 200), {"content-type": "image/png"})
    yield name
    admin.storage.empty_bucket(name)
    admin.storage.delete_bucket(name)


def test_list_v2_pages_with_a_cursor(standin: LocalStandIn, public_bucket: str) -> None:
    files = client(standin, standin.keys().service_role_key).storage.from_(public_bucket)
    # One level, folders folded (as storage-api's with_delimiter), in name order, two per page.
    seen_folders: list[str] = []
    seen_objects: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        options: dict[str, Any] = {"with_delimiter": True, "limit": 2}
        if cursor:
            options["cursor"] = cursor
        page = files.list_v2(options)  # type: ignore[arg-type]
        pages += 1
        seen_folders += [f.name for f in page.folders]
        seen_objects += [o.name for o in page.objects]
        if not page.hasNext:
            assert page.nextCursor is None
            break
        cursor = page.nextCursor
    assert pages == 3  # 6 entries, 2 a page
    assert seen_folders == ["docs/", "pics/"] and seen_objects == ["a.txt", "b.txt", "z.txt"]
    # Without a delimiter: every key under the prefix, flat.
    flat = files.list_v2({"prefix": "docs/"})
    assert [o.name for o in flat.objects] == ["docs/deep/three.txt", "docs/one.txt", "docs/two.txt"]
    assert flat.folders == [] and flat.hasNext is False
    assert all(o.metadata and o.metadata["size"] > 0 for o in flat.objects)


async def test_list_v2_async_errors_and_unknown_routes(standin: LocalStandIn, public_bucket: str) -> None:
    from storage3.exceptions import StorageApiError

    admin = await acreate_client(standin.api_url(), standin.keys().service_role_key)
    files = admin.storage.from_(public_bucket)
    page = await files.list_v2({"prefix": "docs/", "with_delimiter": True})
    assert [f.name for f in page.folders] == ["docs/deep/"]
    with pytest.raises(StorageApiError) as bad_cursor:
        await files.list_v2({"cursor": "not-a-cursor"})
    assert bad_cursor.value.status == "400"
    with pytest.raises(StorageApiError) as missing:
        await admin.storage.from_("no-such-bucket-here").list_v2()
    assert missing.value.status == "404"

    # A Storage route the stand-in does not serve is Supabase's 404, never "Bucket not found" from upload.
    key = standin.keys().service_role_key
    for method, path in (("POST", "/object/public/x/y"), ("POST", "/upload/resumable"), ("GET", "/s3/bucket")):
        res = httpx.request(method, f"{standin.api_url()}/storage/v1{path}", headers={"Authorization": f"Bearer {key}"})
        assert res.status_code == 404, path
        body = res.json()
        assert set(body) == {"statusCode", "error", "message"} and body["statusCode"] == "404"
        assert body["message"] == f"Route {method}:/storage/v1{path} not found"


def test_download_content_disposition_on_public_and_signed_urls(standin: LocalStandIn, public_bucket: str) -> None:
    files = client(standin, standin.keys().service_role_key).storage.from_(public_bucket)
    expected = "attachment; filename=r%C3%A9sum%C3%A9.txt; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"
    public = httpx.get(files.get_public_url("a.txt", {"download": "résumé.txt"}))
    assert public.status_code == 200 and public.headers["content-disposition"] == expected
    signed = files.create_signed_url("a.txt", 60, {"download": True})
    assert httpx.get(signed["signedURL"]).headers["content-disposition"] == (
        "attachment; filename=a.txt; filename*=UTF-8''a.txt"
    )


async def test_image_transformations(standin: LocalStandIn, public_bucket: str) -> None:
    sync_files = client(standin, standin.keys().service_role_key).storage.from_(public_bucket)
    # Public URL with transform -> /render/image/public/...: cover crops to exactly the box.
    url = sync_files.get_public_url("pics/red.png", {"transform": {"width": 100, "height": 100}})
    assert "/render/image/public/" in url
    res = httpx.get(url)
    assert res.status_code == 200 and image_size(res.content) == (100, 100, "PNG")
    # contain keeps the aspect ratio inside the box.
    res = httpx.get(
        sync_files.get_public_url("pics/red.png", {"transform": {"width": 100, "height": 100, "resize": "contain"}})
    )
    assert image_size(res.content)[:2] == (100, 50)
    # A signed URL carries the transformation in its token.
    signed = sync_files.create_signed_url(
        "pics/red.png", 60, {"transform": {"width": 40, "height": 20, "resize": "fill"}}
    )
    assert "/render/image/sign/" in signed["signedURL"]
    assert image_size(httpx.get(signed["signedURL"]).content)[:2] == (40, 20)
    # download() with transform goes through /render/image/authenticated (async client).
    admin = await acreate_client(standin.api_url(), standin.keys().service_role_key)
    data = await admin.storage.from_(public_bucket).download(
        "pics/red.png", {"transform": {"width": 50, "quality": 50}}
    )
    assert image_size(data) == (50, 25, "PNG")
    # Bad parameters and non-images are refused clearly, never served untransformed.
    bad = httpx.get(sync_files.get_public_url("pics/red.png", {"transform": {"width": 99999}}))
    assert bad.status_code == 400 and "width must be between 1 and 2500" in bad.json()["message"]
    text = httpx.get(sync_files.get_public_url("a.txt", {"transform": {"width": 10}}))
    assert text.status_code == 400 and text.json()["statusCode"] == "422"


def test_tokens_without_exp_are_refused_with_the_reason(standin: LocalStandIn) -> None:
    from workbench.backend.tokens import mint

    keys = standin.keys()
    no_exp = mint({"role": "service_role", "iss": "supabase"}, secret=keys.jwt_secret)
    auth = httpx.get(
        f"{standin.api_url()}/auth/v1/admin/users",
        headers={"apikey": keys.anon_key, "Authorization": f"Bearer {no_exp}"},
    )
    assert auth.status_code == 403 and "no exp claim" in auth.json()["msg"] and "never expires" in auth.json()["msg"]
    storage = httpx.get(f"{standin.api_url()}/storage/v1/bucket", headers={"Authorization": f"Bearer {no_exp}"})
    assert storage.status_code == 400 and "no exp claim" in storage.json()["message"]


# ---------------------------------------------------------------------------------------------- inbox readers


def test_inbox_from_the_cli_and_the_magic(
    standin: LocalStandIn, email: str, inbox: Inbox, settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json as jsonlib

    from IPython.testing.globalipapp import get_ipython, start_ipython

    from workbench.cli import main
    from workbench.notebook import session as core

    client(standin).auth.reset_password_for_email("alice@example.com")
    client(standin).auth.sign_in_with_otp({"email": email})
    mail = inbox.latest(email, "magiclink")

    assert main(["local", "inbox", "--dir", str(standin.data_dir), "--to", email, "--json"]) == 0
    listed = jsonlib.loads(capsys.readouterr().out)
    assert [m["id"] for m in listed] == [mail.id] and listed[0]["token_hash"] == mail.token_hash
    assert main(["local", "inbox", "--dir", str(standin.data_dir), "--to", email]) == 0
    text = capsys.readouterr().out
    assert f"code: {mail.otp}" in text and mail.link in text

    shell = start_ipython() or get_ipython()
    assert shell is not None
    shell.run_line_magic("load_ext", "workbench")
    core.connect(settings)
    shown = shell.run_line_magic("sbinbox", email)
    assert [m.id for m in shown] == [mail.id]
    assert any(m.to == "alice@example.com" and m.type == "recovery" for m in shell.run_line_magic("sbinbox", ""))
