"""The figures of a reliability run: counters the tests add to, saved as JSON, rendered as a table.

Tests add to one process-wide :class:`Figures`; when ``WORKBENCH_RELIABILITY_FIGURES`` names a file,
the suite writes it there at the end, and :mod:`reliability.report` renders it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_FILE = "WORKBENCH_RELIABILITY_FIGURES"
SECTIONS = ("faults", "leaks", "secrets", "read_only", "bad_input", "load")


@dataclass
class Figures:
    """``section -> name -> number`` counters plus free-form notes per section."""

    counts: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def add(self, section: str, name: str, amount: float = 1) -> None:
        bucket = self.counts.setdefault(section, {})
        bucket[name] = bucket.get(name, 0) + amount

    def put(self, section: str, name: str, value: float) -> None:
        """Keep the largest value seen (a peak, a bound): repeated runs do not add up."""
        bucket = self.counts.setdefault(section, {})
        bucket[name] = max(bucket.get(name, value), value)

    def note(self, section: str, text: str) -> None:
        self.notes.setdefault(section, []).append(text)

    def get(self, section: str, name: str, default: float = 0) -> float:
        return self.counts.get(section, {}).get(name, default)

    def as_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "notes": self.notes}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Figures:
        return cls(counts=dict(data.get("counts", {})), notes=dict(data.get("notes", {})))

    def save(self, path: Path | str | None = None) -> Path | None:
        target = path or os.environ.get(ENV_FILE)
        if not target:
            return None
        out = Path(target)
        out.write_text(json.dumps(self.as_dict(), indent=2, sort_keys=True))
        return out


FIGURES = Figures()
