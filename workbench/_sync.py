"""Deprecated-for-merge: :func:`run_sync` lives in :mod:`workbench.runner`, the one sync/async bridge.

Kept so parallel branches that import ``workbench._sync`` still work; scripts/relayout.py removes it.
"""

from __future__ import annotations

from workbench.runner import run_sync

__all__ = ["run_sync"]
