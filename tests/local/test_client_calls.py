"""The official client's ordinary Auth calls (sign-up, anonymous sign-in, update_user, the mail flows)
against the local stand-in, sync and async, errors included; mails are read from the local inbox."""

from __future__ import annotations

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

from workbench.identity import Identity
from workbench.impersonation import apply_statement
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
    verified = await c.auth.verify_otp({"email": email, "token": mail.otp, "type": "signup"})
    assert verified.session is not None and verified.user is not None
    assert verified.user.email_confirmed_at is not None
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
