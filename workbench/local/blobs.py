"""Object bytes of the local Storage API, on disk under ``<data>/storage/objects/<version>``.

Files are named by a random version id, never by the object's key, so no key can reach outside the
folder; a write goes to a temporary file that is renamed into place only when complete, so a failed
upload leaves nothing half-written behind.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


def objects_dir(storage_dir: Path) -> Path:
    path = storage_dir / "objects"
    path.mkdir(parents=True, exist_ok=True)
    return path


def blob_path(storage_dir: Path, version: str) -> Path:
    """The file of one version; refuses anything that is not a version id this module made."""
    parsed = uuid.UUID(version)
    if parsed.hex != version:
        raise ValueError("not a blob version id")
    return objects_dir(storage_dir) / version


@contextlib.contextmanager
def _atomic_blob(storage_dir: Path) -> Iterator[tuple[str, BinaryIO]]:
    """A new version's file, written under a temporary name and renamed into place only on success."""
    version = uuid.uuid4().hex
    final = blob_path(storage_dir, version)
    tmp = final.with_suffix(".part")
    try:
        with open(tmp, "wb") as fh:
            yield version, fh
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_blob(storage_dir: Path, chunks: Iterable[bytes]) -> tuple[str, int]:
    """Write bytes atomically; returns (version, size)."""
    size = 0
    with _atomic_blob(storage_dir) as (version, fh):
        for chunk in chunks:
            fh.write(chunk)
            size += len(chunk)
    return version, size


async def write_blob_async(
    storage_dir: Path, chunks: AsyncIterator[bytes], limit: int | None = None
) -> tuple[str, int]:
    """Async twin of :func:`write_blob` for streamed uploads; raises ``BlobTooLarge`` past ``limit``."""
    size = 0
    with _atomic_blob(storage_dir) as (version, fh):
        async for chunk in chunks:
            size += len(chunk)
            if limit is not None and size > limit:
                raise BlobTooLarge(limit)
            fh.write(chunk)
    return version, size


def delete_blob(storage_dir: Path, version: str | None) -> None:
    if not version:
        return
    with contextlib.suppress(ValueError, FileNotFoundError):
        blob_path(storage_dir, version).unlink()


def sweep_partials(storage_dir: Path) -> int:
    """Remove ``.part`` files left by a process killed mid-upload; returns how many."""
    count = 0
    for part in objects_dir(storage_dir).glob("*.part"):
        part.unlink(missing_ok=True)
        count += 1
    return count


class BlobTooLarge(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"object exceeds the maximum allowed size of {limit} bytes")
        self.limit = limit
