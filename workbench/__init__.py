"""Supabase Workbench: run SQL as any Supabase identity from Jupyter, with a local Supabase stand-in.

%load_ext workbench           # magics: %sbconnect, %%sbquery, %sbimpersonate, %sbwhoami, ...
import workbench
wb = workbench.connect()      # the configured project, else the local stand-in
df = await wb.query("select * from tasks", as_user="alice@example.com")
"""

from __future__ import annotations

from typing import Any

from workbench.core import Workbench, connect, current
from workbench.identity import Identity, IdentityError
from workbench.settings import ConnectionMode, Settings, SettingsError, load_settings

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
]
__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext workbench``."""
    from workbench.magics import load_ipython_extension as load

    load(ipython)
