"""Where the workbench connects: a Supabase project (three connection modes) or the local stand-in.

Values come from arguments > environment (``SUPABASE_*``) > ``.env``. Secrets are ``SecretStr``; a bad
value fails at load time with a :class:`SettingsError` naming the variable and the fix, and never
echoing what was given (it may hold a password).
"""

from __future__ import annotations

import difflib
import enum
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from workbench.core.exceptions import WorkbenchUserError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from workbench.core.tls import TLSConfig

ENV_PREFIX = "SUPABASE_"
TRANSACTION_PORT = 6543
SESSION_PORT = 5432
_REF = re.compile(r"^[a-z0-9]{6,40}$")
_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
_PG_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg"}


# libpq's sslmode values (the dashboard's connection strings may carry ``?sslmode=require``).
# The roles an identity may take unless SUPABASE_ALLOWED_ROLES says otherwise: the API roles.
DEFAULT_ALLOWED_ROLES = ("anon", "authenticated", "service_role")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq parameters SQLAlchemy's asyncpg dialect would hand to asyncpg.connect() as unknown keywords
# (``sslmode`` and ``sslrootcert`` are taken out before, by workbench.core.tls.for_url).
_LIBPQ_ONLY = (
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslpassword",
    "sslnegotiation",
    "channel_binding",
    "gssencmode",
    "connect_timeout",
    "application_name",
    "options",
    "keepalives",
)


def asyncpg_engine_url(url: URL) -> URL:
    """The URL for SQLAlchemy's asyncpg dialect, which passes query parameters to ``asyncpg.connect`` as
    keywords: libpq's ``sslmode`` becomes asyncpg's ``ssl`` (same values); other libpq-only parameters
    are a :class:`SettingsError` naming the fix instead of a ``TypeError`` at the first query.

    DSN strings handed to ``asyncpg.connect`` directly keep ``sslmode``: asyncpg's DSN parser reads it.
    """
    query = dict(url.query)
    mode = query.pop("sslmode", None)
    unsupported = sorted(k for k in query if k in _LIBPQ_ONLY)
    if unsupported:
        raise SettingsError(
            f"{ENV_PREFIX}DB_URL: {', '.join(unsupported)} in the URL is a libpq parameter the asyncpg driver "
            "does not take. Fix: remove it (sslmode=require is supported; set the application name with "
            f"{ENV_PREFIX}APPLICATION_NAME)."
        )
    if mode is not None:
        if isinstance(mode, tuple) or mode not in SSL_MODES:
            raise SettingsError(f"{ENV_PREFIX}DB_URL: sslmode must be one of {', '.join(SSL_MODES)}.")
        query["ssl"] = mode
    return url.set(query=query)


class ConnectionMode(enum.StrEnum):
    DIRECT = "direct"
    SESSION = "session"
    TRANSACTION = "transaction"


class SettingsError(WorkbenchUserError, ValueError):
    """Settings that cannot work. One line per problem: ``VARIABLE: what is wrong. Fix: ...``."""


class _Problem(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{ENV_PREFIX}{field.upper()}: {message}")


class Settings(BaseSettings):
    """A Supabase project, given as a full database URL or as ref + password + pooler host + mode."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    db_url: SecretStr | None = None
    project_ref: str | None = None
    db_password: SecretStr | None = None
    pooler_host: str | None = None
    db_mode: ConnectionMode | None = None
    db_name: str = "postgres"
    url: str | None = None
    anon_key: SecretStr | None = None
    service_role_key: SecretStr | None = None
    jwt_secret: SecretStr | None = None
    jwks_url: str | None = None
    local_dir: Path | None = None
    application_name: str = "supabase-workbench"
    statement_timeout_ms: int = 60_000
    # Roles an identity (a cell's --role, a token's role claim) may take: anything else is refused before
    # a statement is sent. Comma-separated; SUPABASE_ALLOWED_ROLES.
    allowed_roles: str = ",".join(DEFAULT_ALLOWED_ROLES)
    # Opt-in: impersonated work logs in as this role (on Supabase `authenticator`, or a NOINHERIT role of
    # your own granted the API roles), so PostgreSQL itself refuses any other role. The local stand-in
    # sets both itself.
    authenticator_user: str = "authenticator"
    authenticator_password: SecretStr | None = None

    def __init__(self, **values: Any) -> None:
        # pydantic-settings' own init options (_env_file, _secrets_dir, ...) start with an underscore
        unknown = sorted(n for n in set(values) - set(type(self).model_fields) if not n.startswith("_"))
        if unknown:  # a typo must not silently fall back to the local stand-in
            problems = "\n  ".join(f"{name}: not a setting.{_closest(name)}" for name in unknown)
            raise SettingsError(
                f"Invalid Supabase settings:\n  {problems}\n  Valid settings: {', '.join(type(self).model_fields)}."
            )
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence, first wins: arguments > environment (``SUPABASE_*``) > ``.env`` > secrets dir.

        Unknown arguments fail in ``__init__``; unknown ``SUPABASE_*`` variables are ignored (the
        environment holds other tools' settings too).
        """
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    # -- validation ----------------------------------------------------------------------------------
    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise _Problem(
                    "url",
                    "is not an http(s) URL. Fix: use the project URL from the dashboard, "
                    "like https://<project-ref>.supabase.co (or http://127.0.0.1:PORT locally).",
                )
        if self.db_url is not None:
            self._check_db_url()
        elif self.project_ref is not None or self.db_password is not None or self.pooler_host is not None:
            self._check_parts()
        if not self.allowed_role_set or any(not _ROLE.match(r) for r in self.allowed_role_set):
            raise _Problem(
                "allowed_roles",
                "must be a comma-separated list of role names, like 'anon,authenticated,service_role'.",
            )
        if self.statement_timeout_ms < 0:
            raise _Problem("statement_timeout_ms", "must be >= 0 (0 disables the timeout).")
        self._check_tls()
        return self

    def _check_db_url(self) -> None:
        assert self.db_url is not None
        raw = self.db_url.get_secret_value()
        parts = urlsplit(raw)
        if parts.scheme not in _PG_SCHEMES or not parts.hostname:
            raise _Problem(
                "db_url",
                "is not a PostgreSQL URL. Fix: copy the connection string from the dashboard's Connect "
                "dialog, like postgresql://postgres.<ref>:<password>@aws-0-<region>.pooler.supabase.com:6543/postgres.",
            )
        try:
            port = parts.port or SESSION_PORT
        except ValueError:
            raise _Problem("db_url", "has a port that is not a number. Fix: use 5432 or 6543.") from None
        host, user = parts.hostname, parts.username or ""
        if host.endswith(".pooler.supabase.com"):
            self._check_pooler(host, port, user, "db_url")
        elif host.startswith("db.") and host.endswith(".supabase.co"):
            mode = self.db_mode or ConnectionMode.DIRECT
            if mode is not ConnectionMode.DIRECT:
                raise _Problem(
                    "db_mode",
                    f"is {mode.value!r} but db.<ref>.supabase.co is the direct connection. Fix: set it to "
                    "'direct', or use the pooler host for session/transaction mode.",
                )

    def _check_pooler(self, host: str, port: int, user: str, field: str) -> None:
        name, _, ref = user.partition(".")
        if not name or not ref:
            raise _Problem(
                field,
                f"the pooler user {user!r} lacks the '.<project-ref>' suffix (or its user part), so Supavisor "
                "answers 'Tenant or user not found'. Fix: use 'postgres.<project-ref>' as the user.",
            )
        expected = {TRANSACTION_PORT: ConnectionMode.TRANSACTION, SESSION_PORT: ConnectionMode.SESSION}.get(port)
        if expected is None:
            raise _Problem(
                field,
                f"port {port} is not a Supavisor port. Fix: 6543 for transaction mode, 5432 for session mode.",
            )
        if self.db_mode is not None and self.db_mode is not expected:
            want = TRANSACTION_PORT if self.db_mode is ConnectionMode.TRANSACTION else SESSION_PORT
            if self.db_mode is ConnectionMode.DIRECT:
                fix = "use the host db.<project-ref>.supabase.co for a direct connection"
            else:
                fix = f"use port {want} for {self.db_mode.value} mode"
            raise _Problem(
                "db_mode",
                f"is {self.db_mode.value!r} but the pooler port {port} means {expected.value} mode. Fix: {fix}.",
            )

    def _check_parts(self) -> None:
        if not self.project_ref or not _REF.match(self.project_ref):
            raise _Problem(
                "project_ref",
                "is missing or not a project ref. Fix: use the 20-character id from your project URL "
                "(https://<project-ref>.supabase.co).",
            )
        if self.db_password is None or not self.db_password.get_secret_value():
            raise _Problem("db_password", "is required with SUPABASE_PROJECT_REF. Fix: set the database password.")
        mode = self.db_mode or (ConnectionMode.TRANSACTION if self.pooler_host else ConnectionMode.DIRECT)
        if mode is not ConnectionMode.DIRECT:
            if not self.pooler_host:
                raise _Problem(
                    "pooler_host",
                    f"is required for {mode.value} mode. Fix: copy it from the dashboard's Connect dialog, "
                    "like aws-0-<region>.pooler.supabase.com.",
                )
            if urlsplit(f"//{self.pooler_host}").hostname != self.pooler_host.lower() or "/" in self.pooler_host:
                raise _Problem("pooler_host", "must be a bare host name, like aws-0-<region>.pooler.supabase.com.")

    # -- derived values ------------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        """No project configured: the workbench uses its embedded local stand-in."""
        return self.db_url is None and self.project_ref is None

    @property
    def mode(self) -> ConnectionMode:
        """The connection mode: explicit, or inferred from the URL (port 6543 means transaction)."""
        if self.db_mode is not None:
            return self.db_mode
        if self.db_url is not None:
            parts = urlsplit(self.db_url.get_secret_value())
            if parts.hostname and parts.hostname.endswith(".pooler.supabase.com"):
                return ConnectionMode.TRANSACTION if parts.port == TRANSACTION_PORT else ConnectionMode.SESSION
            return ConnectionMode.DIRECT
        return ConnectionMode.TRANSACTION if self.pooler_host else ConnectionMode.DIRECT

    @property
    def resolved_jwks_url(self) -> str | None:
        if self.jwks_url:
            return self.jwks_url
        return f"{self.url.rstrip('/')}/auth/v1/.well-known/jwks.json" if self.url else None

    def database_url(self, driver: str = "asyncpg") -> URL:
        """The SQLAlchemy URL (its ``repr``/``str`` mask the password)."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.engine.url import URL as SAURL

        if self.db_url is not None:
            url = make_url(self.db_url.get_secret_value())
            return url.set(drivername=f"postgresql+{driver}")
        if self.project_ref is None or self.db_password is None:
            raise SettingsError(
                f"{ENV_PREFIX}DB_URL: no database configured. Fix: set SUPABASE_DB_URL, or SUPABASE_PROJECT_REF "
                "and SUPABASE_DB_PASSWORD, or use workbench.local.settings.standin_settings() for the local stand-in."
            )
        mode = self.mode
        if mode is ConnectionMode.DIRECT:
            host, user, port = f"db.{self.project_ref}.supabase.co", "postgres", SESSION_PORT
        else:
            assert self.pooler_host is not None
            host, user = self.pooler_host, f"postgres.{self.project_ref}"
            port = TRANSACTION_PORT if mode is ConnectionMode.TRANSACTION else SESSION_PORT
        return SAURL.create(
            f"postgresql+{driver}",
            username=user,
            password=self.db_password.get_secret_value(),
            host=host,
            port=port,
            database=self.db_name,
        )

    @property
    def allowed_role_set(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.allowed_roles.split(",") if r.strip())

    def impersonation_url(self, driver: str = "asyncpg") -> URL | None:
        """The URL impersonated work logs in with: the database URL with the authenticator's user and
        password (``authenticator.<ref>`` through Supavisor), or None when no authenticator password is
        configured (then only the allow-list stands between a cell and other roles)."""
        if self.authenticator_password is None:
            return None
        url = self.database_url(driver)
        _, dot, ref = (url.username or "").partition(".")
        user = f"{self.authenticator_user}.{ref}" if dot else self.authenticator_user
        return url.set(username=user, password=self.authenticator_password.get_secret_value())

    def describe(self) -> str:
        """A one-line, secret-free summary for displays and logs."""
        where = "local stand-in" if self.is_local else self.database_url().render_as_string(hide_password=True)
        return f"{where} ({self.mode.value} mode)"

    # -- TLS (workbench.core.tls; the remote-projects work keeps its settings in this one block) ------------
    db_sslmode: str | None = None
    db_sslrootcert: Path | None = None

    def _check_tls(self) -> None:
        """Fail at load time on an unknown sslmode or a CA file that is not there."""
        from workbench.core import tls

        try:
            self.tls()
        except tls.TLSSettingError as exc:
            field, _, message = str(exc).partition(": ")
            name = field.removeprefix(ENV_PREFIX).lower() if field.startswith(ENV_PREFIX) else "db_url"
            raise _Problem(name, message if field.startswith(ENV_PREFIX) else str(exc)) from None

    def tls(self) -> TLSConfig:
        """The TLS decision for the database: ``SUPABASE_DB_SSLMODE`` / ``SUPABASE_DB_SSLROOTCERT`` >
        the URL's ``sslmode`` / ``sslrootcert`` > ``require`` for a remote host, ``prefer`` locally."""
        from workbench.core import tls

        if self.db_url is None and self.project_ref is None:
            return tls.resolve("127.0.0.1", None, self.db_sslmode, self.db_sslrootcert)
        _, config = tls.for_url(self.database_url(), self.db_sslmode, self.db_sslrootcert)
        return config

    def asyncpg_connect_args(self) -> dict[str, Any]:
        """``(dsn, ssl=...)`` for code that calls ``asyncpg.connect`` itself: the DSN without the TLS
        query parameters, and the ``ssl`` argument they (or the settings) mean."""
        from workbench.core import tls

        url, config = tls.for_url(self.database_url(), self.db_sslmode, self.db_sslrootcert)
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return {"dsn": dsn, "ssl": config.asyncpg_ssl()}


def load_settings(**overrides: Any) -> Settings:
    """Arguments > environment > ``.env``. Never starts anything: with no project configured the result
    ``is_local``; :func:`workbench.local.settings.resolve_settings` starts the stand-in for those settings."""
    return Settings(**overrides)


def _closest(name: str) -> str:
    match = difflib.get_close_matches(name, list(Settings.model_fields), n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""


def _describe(exc: ValidationError) -> str:
    """Turn pydantic's report into our lines, dropping the input values (they may be secrets)."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        msg = str(err.get("msg", ""))
        msg = msg.removeprefix("Value error, ")
        if msg.startswith(ENV_PREFIX):
            lines.append(msg)
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()))
        name = f"{ENV_PREFIX}{loc.upper()}" if loc else "settings"
        lines.append(f"{name}: {msg}.")
    return "Invalid Supabase settings:\n  " + "\n  ".join(lines)
