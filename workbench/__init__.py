"""Supabase Workbench: run SQL as any Supabase identity from Jupyter, with a local Supabase stand-in.

    %load_ext workbench           # magics: %sbconnect, %%sbquery, %sbimpersonate, %sbwhoami, ...
    import workbench
    wb = workbench.connect()      # the configured project, else the local stand-in
    df = await wb.query("select * from tasks", as_user="alice@example.com")

Names are imported on first use, so back ends that only need ``workbench.backend.fastapi`` or
``workbench.backend.tokens`` do not load pandas or the notebook layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench.core.exceptions import WorkbenchUserError
    from workbench.core.identity import Identity, IdentityError
    from workbench.core.settings import ConnectionMode, Settings, SettingsError, load_settings
    from workbench.local.settings import resolve_settings
    from workbench.notebook.session import Workbench, connect, current

__version__ = "0.1.0"

_EXPORTS = {
    "Workbench": "workbench.notebook.session",
    "connect": "workbench.notebook.session",
    "current": "workbench.notebook.session",
    "Identity": "workbench.core.identity",
    "IdentityError": "workbench.core.identity",
    "ConnectionMode": "workbench.core.settings",
    "Settings": "workbench.core.settings",
    "SettingsError": "workbench.core.settings",
    "load_settings": "workbench.core.settings",
    "resolve_settings": "workbench.local.settings",
    "WorkbenchUserError": "workbench.core.exceptions",
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
    from workbench.core.extras import require

    require("notebook", "%load_ext workbench")
    from workbench.notebook.magics import load_ipython_extension as load

    load(ipython)
