"""Settings that point at the local stand-in, starting it when needed.

:mod:`workbench.core.settings` only reads configuration (it never starts processes); the callers that want
"the project if configured, else the local stand-in" (``workbench.connect()``, ``%sbconnect``,
``workbench doctor``, the notebooks) call :func:`resolve_settings` here.
"""

from __future__ import annotations

from typing import Any

from workbench.core.extras import require

require("local", "The local Supabase stand-in")

from workbench.core.settings import ConnectionMode, Settings  # noqa: E402
from workbench.local.standin import LocalStandIn  # noqa: E402 - after the check that names the extra

__all__ = ["resolve_settings", "standin_settings"]


def standin_settings(standin: LocalStandIn | None = None, **overrides: Any) -> Settings:
    """Settings for the running local stand-in (its URL and keys), started if needed."""
    standin = standin or LocalStandIn()
    status = standin.status()
    if not status.db_running or not status.api_running:
        status = standin.start()
    keys = standin.keys()
    values: dict[str, Any] = {
        "db_url": standin.dsn(),  # with the generated password: the stand-in trusts no connection
        "authenticator_password": keys.db_password("authenticator"),
        "db_mode": ConnectionMode.DIRECT,
        "url": status.api_url,
        "anon_key": keys.anon_key,
        "service_role_key": keys.service_role_key,
        "jwt_secret": keys.jwt_secret,
        "local_dir": standin.data_dir,
    }
    return Settings(**(values | overrides))


def resolve_settings(**overrides: Any) -> Settings:
    """Arguments > environment > ``.env``; with no project configured, the local stand-in (started)."""
    settings = Settings(**overrides)
    if settings.is_local:
        return standin_settings(LocalStandIn(settings.local_dir), **overrides)
    return settings
