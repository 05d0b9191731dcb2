"""``python -m benchmarks``: run every suite and print the ratio tables."""

from __future__ import annotations

from benchmarks.run import main

raise SystemExit(main())
