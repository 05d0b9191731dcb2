"""Supabase Workbench: run SQL as any Supabase identity from Jupyter, with a local Supabase stand-in.

    %load_ext workbench           # magics: %sbconnect, %%sbquery, %sbimpersonate, %sbwhoami, ...
    import workbench
    wb = workbench.connect()      # the configured project, else the local stand-in
    df = await wb.query("select * from tasks", as_user="alice@example.com")

Names are imported on first use, so back ends that only need ``workbench.fastapi`` or
``workbench.tokens`` do not load pandas or the notebook layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.core import Workbench, connect, current
    from workbench.exceptions import WorkbenchUserError
    from workbench.identity import Identity, IdentityError
    from workbench.local.settings import resolve_settings
    from workbench.settings import ConnectionMode, Settings, SettingsError, load_settings

__version__ = "0.1.0"

_EXPORTS = {
    "Workbench": "workbench.core",
    "connect": "workbench.core",
    "current": "workbench.core",
    "Identity": "workbench.identity",
    "IdentityError": "workbench.identity",
    "ConnectionMode": "workbench.settings",
    "Settings": "workbench.settings",
    "SettingsError": "workbench.settings",
    "load_settings": "workbench.settings",
    "resolve_settings": "workbench.local.settings",
    "WorkbenchUserError": "workbench.exceptions",
}
__all__ = [
    "ConnectionMode",
    "Identity",
    "IdentityError",
    "Settings",
    "SettingsError",
    "Workbench",
    "connect",
    "current",
    "load_ipython_extension",
    "load_settings",
    "resolve_settings",
    "WorkbenchUserError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext workbench`` (needs ``supabase-workbench[notebook]``)."""
    from workbench.extras import require

    require("notebook", "%load_ext workbench")
    from workbench.magics import load_ipython_extension as load

    load(ipython)
