"""A local stand-in of a test's own, for tests that change the database (policies, schemas)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from workbench.local.standin import LocalStandIn


@contextlib.contextmanager
def private_standin(name: str) -> Iterator[LocalStandIn]:
    """Start a stand-in in a fresh folder and always stop and remove it.

    The folder is made outside pytest's ``pytest-of-<user>`` root on purpose: every pytest session resets
    that root to mode 0700, and then the service user running PostgreSQL (as root) could no longer
    reach its data folder, so ``pg_ctl stop`` fails and the server is left running.
    """
    root = Path(tempfile.mkdtemp(prefix=f"wb-{name}-", dir=os.environ.get("TMPDIR", "/tmp")))
    instance = LocalStandIn(root / "local")
    try:
        instance.start()
        yield instance
    finally:
        try:
            instance.destroy()
        finally:
            shutil.rmtree(root, ignore_errors=True)
