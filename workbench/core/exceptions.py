"""The base of every error a user can fix: the magics show it as one short message, without a traceback.

Stdlib only, so the lightest module (settings, sqltext, identity) can subclass it without importing the
database drivers that :mod:`workbench.core.errors` needs to classify failures.
"""

from __future__ import annotations

__all__ = ["WorkbenchUserError"]


class WorkbenchUserError(Exception):
    """Bad input or a failure explained for the user: the message says what was wrong and what to do.

    Subclasses also derive from the builtin their callers may catch (``ValueError``, ``RuntimeError``).
    """
