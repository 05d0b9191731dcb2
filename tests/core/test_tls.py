"""TLS settings for real projects, against the remote-project rig: every sslmode, and the three failures
(wrong CA, wrong host name, a server without TLS) each as one error naming the setting to change."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from sqlalchemy import text

from workbench.core import tls
from workbench.core.engine import create_engine, engine_tls
from workbench.core.errors import classify
from workbench.core.settings import Settings, SettingsError
from workbench.local.remote_rig import RemoteRig, make_certificates

KINDS = ("direct", "session", "transaction")


async def _tls_line(settings: Settings) -> str:
    """Connect through the engine and describe the TLS of the raw connection (what doctor prints)."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("select 1"))).scalar() == 1
            raw = await conn.get_raw_connection()
            return await tls.describe_connection(raw.driver_connection)
    finally:
        await engine.dispose()


# -- resolution, no server --------------------------------------------------------------------------------
def test_remote_hosts_default_to_require_and_local_ones_to_prefer() -> None:
    remote = Settings(
        db_url="postgresql://postgres.abcdefghijklmnopqrst:pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres"
    )
    assert remote.tls().mode is tls.SSLMode.REQUIRE
    assert "remote host" in remote.tls().source
    local = Settings(db_url="postgresql://postgres:pw@127.0.0.1:5432/postgres")
    assert local.tls().mode is tls.SSLMode.PREFER


def test_the_setting_wins_over_the_url_and_the_url_over_the_default(tmp_path: Path) -> None:
    url = "postgresql://postgres:pw@db.abcdefghijklmnopqrst.supabase.co:5432/postgres?sslmode=verify-ca"
    assert Settings(db_url=url).tls().mode is tls.SSLMode.VERIFY_CA
    assert Settings(db_url=url, db_sslmode="disable").tls().mode is tls.SSLMode.DISABLE
    ca = make_certificates(tmp_path).ca
    given = Settings(db_url=url.split("?")[0], db_sslrootcert=ca).tls()
    assert (given.mode, given.rootcert) == (tls.SSLMode.VERIFY_FULL, ca)  # libpq: a root cert means verify


def test_bad_tls_settings_fail_at_load_time_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SUPABASE_DB_SSLMODE: 'verify' is not an sslmode"):
        Settings(db_url="postgresql://postgres:pw@example.com/postgres", db_sslmode="verify")
    missing = tmp_path / "prod-ca-2021.crt"
    with pytest.raises(SettingsError, match="SUPABASE_DB_SSLROOTCERT: the CA file .* does not exist"):
        Settings(db_url="postgresql://postgres:pw@example.com/postgres", db_sslrootcert=missing)
    with pytest.raises(SettingsError, match="the URL's sslmode"):
        Settings(db_url="postgresql://postgres:pw@example.com/postgres?sslmode=on")


def test_the_url_parameters_never_reach_asyncpg_as_keywords(tmp_path: Path) -> None:
    ca = make_certificates(tmp_path).ca
    s = Settings(db_url=f"postgresql://postgres:pw@example.com/postgres?sslmode=verify-full&sslrootcert={ca}")
    args = s.asyncpg_connect_args()
    assert "sslmode" not in args["dsn"] and "sslrootcert" not in args["dsn"]
    assert isinstance(args["ssl"], ssl.SSLContext) and args["ssl"].check_hostname


# -- every mode against the rig ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sslmode", [None, "prefer", "require", "verify-ca", "verify-full"])
async def test_every_encrypting_mode_connects_through_every_endpoint(
    remote_rig: RemoteRig, kind: str, sslmode: str | None
) -> None:
    rootcert = remote_rig.ca_file if sslmode and sslmode.startswith("verify") else None
    settings = remote_rig.settings(kind, sslmode, db_sslrootcert=rootcert)
    line = await _tls_line(settings)
    assert line.startswith("TLSv1.")
    if sslmode in ("verify-ca", "verify-full"):
        assert "certificate verified" in line
        assert ("host name checked" in line) == (sslmode == "verify-full")
    else:
        assert "NOT verified" in line


async def test_verify_full_from_the_pasted_url_alone(remote_rig: RemoteRig) -> None:
    url = remote_rig.url("transaction", "verify-full", sslrootcert=str(remote_rig.ca_file))
    settings = Settings(db_url=url, db_mode="transaction")
    assert "host name checked" in await _tls_line(settings)


async def test_disable_and_allow_talk_plain_text_to_the_direct_endpoint(remote_rig: RemoteRig) -> None:
    assert await _tls_line(remote_rig.settings("direct", "disable")) == "not encrypted"
    assert await _tls_line(remote_rig.settings("direct", "allow")) == "not encrypted"


@pytest.mark.parametrize("kind", ["session", "transaction"])
async def test_disable_against_a_pooler_that_requires_tls_names_the_setting(remote_rig: RemoteRig, kind: str) -> None:
    with pytest.raises(tls.TLSError, match=r"requires TLS.*SUPABASE_DB_SSLMODE=require"):
        await _tls_line(remote_rig.settings(kind, "disable"))


# -- the three failures ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
async def test_a_wrong_ca_is_one_error_naming_sslrootcert(remote_rig: RemoteRig, kind: str, tmp_path: Path) -> None:
    other_ca = make_certificates(tmp_path).ca
    settings = remote_rig.settings(kind, "verify-full", db_sslrootcert=other_ca)
    with pytest.raises(tls.TLSError) as info:
        await _tls_line(settings)
    message = str(info.value)
    assert "not signed by the CA in SUPABASE_DB_SSLROOTCERT" in message and str(other_ca) in message
    assert remote_rig.password not in message
    assert classify(info.value).message.startswith("TLS: the server's certificate is not signed")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_wrong_host_name_is_one_error_naming_sslmode(remote_rig: RemoteRig, kind: str) -> None:
    # The certificate names 127.0.0.1 only; "localhost" reaches the same server under another name.
    url = remote_rig.url(kind, "verify-full", host="localhost")
    settings = Settings(db_url=url, db_mode=kind, db_sslrootcert=remote_rig.ca_file)
    with pytest.raises(tls.TLSError, match=r"not valid for the host 'localhost'.*SUPABASE_DB_SSLMODE=verify-ca"):
        await _tls_line(settings)
    # ... and verify-ca, which the message proposes, does connect
    fixed = Settings(db_url=url, db_mode=kind, db_sslrootcert=remote_rig.ca_file, db_sslmode="verify-ca")
    assert "certificate verified, host name not checked" in await _tls_line(fixed)


@pytest.mark.parametrize("sslmode", ["require", "verify-full"])
async def test_a_server_without_tls_is_one_error_naming_sslmode(remote_rig: RemoteRig, sslmode: str, standin) -> None:  # type: ignore[no-untyped-def]
    plain_port = standin.pg.running_port()  # the stand-in's own PostgreSQL: built without TLS
    url = f"postgresql://postgres:{remote_rig.password}@127.0.0.1:{plain_port}/postgres?sslmode={sslmode}"
    settings = Settings(db_url=url, db_sslrootcert=remote_rig.ca_file if sslmode != "require" else None)
    with pytest.raises(tls.TLSError, match=r"does not offer TLS.*SUPABASE_DB_SSLMODE=disable"):
        await _tls_line(settings)


def test_engines_remember_their_tls_decision(remote_rig: RemoteRig) -> None:
    engine = create_engine(remote_rig.settings("session", "verify-ca", db_sslrootcert=remote_rig.ca_file))
    config = engine_tls(engine)
    assert config is not None and config.mode is tls.SSLMode.VERIFY_CA and config.verifies


async def test_doctor_shows_the_tls_version_and_whether_the_certificate_was_verified(remote_rig: RemoteRig) -> None:
    from workbench.doctor import diagnose

    verified = {
        c.name: c
        for c in await diagnose(remote_rig.settings("session", "verify-full", db_sslrootcert=remote_rig.ca_file))
    }
    assert verified["TLS"].ok and verified["TLS"].detail.startswith("TLSv1.")
    assert "certificate verified, host name checked" in verified["TLS"].detail
    assert "sslmode=verify-full" in verified["TLS"].detail
    unverified = {c.name: c for c in await diagnose(remote_rig.settings("direct", "require"))}
    assert "certificate NOT verified" in unverified["TLS"].detail


async def test_doctor_reports_a_tls_failure_as_one_line_with_the_fix(remote_rig: RemoteRig, tmp_path: Path) -> None:
    from workbench.doctor import diagnose

    other_ca = make_certificates(tmp_path).ca
    checks = await diagnose(remote_rig.settings("direct", "verify-ca", db_sslrootcert=other_ca))
    failed = [c for c in checks if not c.ok]
    assert [c.name for c in failed] == ["TLS"]
    assert "SUPABASE_DB_SSLROOTCERT" in failed[0].fix
