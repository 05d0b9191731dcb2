"""TLS for database connections: libpq-style ``sslmode`` / ``sslrootcert`` -> what each driver takes.

A real Supabase project is reached over the internet, so the default there is ``require`` (encrypted);
``verify-ca`` / ``verify-full`` also check the certificate against the CA file the dashboard offers
(Database settings -> SSL configuration). The local stand-in (a loopback host or a socket folder) keeps
``prefer``, asyncpg's own default, so nothing changes for it.

Settings come from ``SUPABASE_DB_SSLMODE`` / ``SUPABASE_DB_SSLROOTCERT`` (which win) or from the URL's
``sslmode`` / ``sslrootcert`` query parameters (what users paste). asyncpg does not accept those as
keyword arguments, so :func:`split_url` takes them out of the URL and :class:`TLSConfig` turns them into
an ``ssl.SSLContext``. A failed handshake becomes one :class:`TLSError` naming the setting to change.
"""

from __future__ import annotations

import enum
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

MODE_VARIABLE = "SUPABASE_DB_SSLMODE"
ROOTCERT_VARIABLE = "SUPABASE_DB_SSLROOTCERT"
_URL_KEYS = ("sslmode", "sslrootcert", "ssl")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
_DASHBOARD = "the CA certificate from the dashboard (Database settings -> SSL configuration)"


class SSLMode(enum.StrEnum):
    """libpq's ``sslmode`` values (``allow`` and ``prefer`` fall back to plain text; the rest do not)."""

    DISABLE = "disable"
    ALLOW = "allow"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


class TLSSettingError(ValueError):
    """A TLS setting that cannot work (unknown mode, CA file missing or unreadable)."""


class TLSError(ConnectionError):
    """The TLS handshake failed; the message names the setting to change. Not transient: retrying the
    same settings fails the same way."""


def parse_mode(value: str, where: str = MODE_VARIABLE) -> SSLMode:
    try:
        return SSLMode(value.strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in SSLMode)
        raise TLSSettingError(
            f"{where}: {value!r} is not an sslmode. Fix: use one of {allowed} (Supabase: require, or "
            f"verify-full with {ROOTCERT_VARIABLE})."
        ) from None


def is_local_host(host: str | None) -> bool:
    """Loopback or a unix-socket folder: the local stand-in, where TLS is optional."""
    if not host or host.startswith("/"):
        return True
    if host.lower() in _LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class TLSConfig:
    """The TLS decision for one connection target. ``source`` says where ``mode`` came from (for errors)."""

    mode: SSLMode
    rootcert: Path | None = None
    host: str | None = None
    source: str = "default"

    @property
    def verifies(self) -> bool:
        return self.mode in (SSLMode.VERIFY_CA, SSLMode.VERIFY_FULL)

    def describe(self) -> str:
        ca = f", CA {self.rootcert.name}" if self.rootcert else ""
        return f"sslmode={self.mode.value} ({self.source}{ca})"

    def ssl_context(self) -> ssl.SSLContext:
        """The client context for require / verify-ca / verify-full."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self.verifies:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if self.rootcert is None or str(self.rootcert) == "system":
            ctx.load_default_certs()
        else:
            try:
                ctx.load_verify_locations(cafile=str(self.rootcert))
            except (OSError, ssl.SSLError) as exc:
                raise TLSSettingError(
                    f"{ROOTCERT_VARIABLE}: cannot read the CA file {self.rootcert} ({exc.__class__.__name__}). "
                    f"Fix: point it at {_DASHBOARD}, saved as a PEM file."
                ) from None
        ctx.check_hostname = self.mode is SSLMode.VERIFY_FULL
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def asyncpg_ssl(self) -> ssl.SSLContext | str | bool:
        """The ``ssl=`` argument of ``asyncpg.connect`` (a context, or asyncpg's fallback modes)."""
        if self.mode is SSLMode.DISABLE:
            return False
        if self.mode in (SSLMode.ALLOW, SSLMode.PREFER):
            return self.mode.value
        return self.ssl_context()

    def libpq_params(self) -> dict[str, str]:
        """``sslmode`` / ``sslrootcert`` for psycopg (libpq reads them itself)."""
        params = {"sslmode": self.mode.value}
        if self.rootcert is not None:
            params["sslrootcert"] = str(self.rootcert)
        return params

    def explain(self, exc: BaseException) -> TLSError | None:
        """One clear error for a failed TLS connection, or None when ``exc`` is not about TLS."""
        text = str(exc)
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = getattr(exc, "verify_message", "") or text
            if "mismatch" in reason.lower() or "hostname" in reason.lower():
                return TLSError(
                    f"TLS: the server's certificate is not valid for the host {self.host!r} ({reason}). "
                    f"Fix: connect with the host name the certificate names (the one from the dashboard), "
                    f"or set {MODE_VARIABLE}=verify-ca to check the CA but not the host name."
                )
            ca = f"the CA in {ROOTCERT_VARIABLE} ({self.rootcert})" if self.rootcert else "the system's CAs"
            return TLSError(
                f"TLS: the server's certificate is not signed by {ca} ({reason}). "
                f"Fix: set {ROOTCERT_VARIABLE} to {_DASHBOARD}, or {MODE_VARIABLE}=require to encrypt "
                "without verifying."
            )
        if "rejected SSL upgrade" in text or "server does not support SSL" in text:
            return TLSError(
                f"TLS: the server at {self.host!r} does not offer TLS, but sslmode is {self.mode.value} "
                f"({self.source}). Fix: set {MODE_VARIABLE}=disable (or sslmode=disable in the URL) for a "
                "server without TLS, such as a local PostgreSQL; Supabase always offers TLS."
            )
        if "SSL connection is required" in text or "SSL required" in text:
            return TLSError(
                f"TLS: the server requires TLS, but sslmode is {self.mode.value} ({self.source}). "
                f"Fix: set {MODE_VARIABLE}=require (or remove sslmode=disable from the URL)."
            )
        if isinstance(exc, ssl.SSLError):
            return TLSError(
                f"TLS: the handshake failed ({exc.__class__.__name__}: {getattr(exc, 'reason', None) or text}). "
                f"Fix: check {MODE_VARIABLE} and {ROOTCERT_VARIABLE}; Supabase accepts require and verify-full."
            )
        return None


def resolve(
    host: str | None,
    url_params: dict[str, Any] | None = None,
    sslmode: str | SSLMode | None = None,
    sslrootcert: str | Path | None = None,
) -> TLSConfig:
    """Settings win over the URL; without either, ``require`` for a remote host and ``prefer`` locally."""
    params = url_params or {}
    rootcert_raw = sslrootcert if sslrootcert is not None else params.get("sslrootcert")
    rootcert = Path(str(rootcert_raw)).expanduser() if rootcert_raw else None
    if rootcert is not None and str(rootcert) != "system" and not rootcert.is_file():
        where = ROOTCERT_VARIABLE if sslrootcert is not None else "the URL's sslrootcert"
        raise TLSSettingError(
            f"{where}: the CA file {rootcert} does not exist. Fix: download {_DASHBOARD} and give its path."
        )
    if sslmode is not None:
        mode, source = parse_mode(str(sslmode)), MODE_VARIABLE
    elif params.get("sslmode"):
        mode, source = parse_mode(str(params["sslmode"]), "the URL's sslmode"), "the URL's sslmode"
    elif params.get("ssl") and str(params["ssl"]).lower() not in ("true", "1"):
        mode, source = parse_mode(str(params["ssl"]), "the URL's ssl"), "the URL's ssl"
    elif rootcert is not None:
        mode, source = SSLMode.VERIFY_FULL, f"{ROOTCERT_VARIABLE} given"  # libpq: a root cert means verify
    elif is_local_host(host):
        mode, source = SSLMode.PREFER, "default for a local host"
    else:
        mode, source = SSLMode.REQUIRE, "default for a remote host"
    return TLSConfig(mode=mode, rootcert=rootcert, host=host, source=source)


def split_url(url: URL) -> tuple[URL, dict[str, Any]]:
    """The URL without the TLS query parameters (asyncpg rejects them as keywords), and those parameters."""
    params = {k: v for k, v in url.query.items() if k in _URL_KEYS}
    if not params:
        return url, {}
    return url.difference_update_query(list(params)), params


def for_url(
    url: URL, sslmode: str | SSLMode | None = None, sslrootcert: str | Path | None = None
) -> tuple[URL, TLSConfig]:
    """Split ``url`` and resolve its TLS config in one go."""
    clean, params = split_url(url)
    host = clean.host or (str(clean.query.get("host")) if clean.query.get("host") else None)
    return clean, resolve(host, params, sslmode, sslrootcert)


async def describe_connection(conn: Any) -> str:
    """``TLSv1.3, certificate verified`` style line for an open asyncpg connection (``workbench doctor``)."""
    transport = getattr(conn, "_transport", None)
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return "not encrypted"
    version = ssl_object.version() or "TLS"
    cipher = (ssl_object.cipher() or ("?",))[0]
    ctx = ssl_object.context
    verified = ctx.verify_mode == ssl.CERT_REQUIRED
    host = "host name checked" if ctx.check_hostname else "host name not checked"
    return f"{version} ({cipher}), certificate {'verified, ' + host if verified else 'NOT verified'}"
