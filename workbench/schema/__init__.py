"""Schema reflection, SQLAlchemy model generation with round-trip checks, diff and ER diagrams.

    db = await reflect_dsn(dsn, ["public"])             # one plain model of the database (pg_catalog)
    code = generate(db, ["nobidi"], external="standin")  # SQLAlchemy 2.0 typed declarative source
    code.write("app/models.py")
    report = await roundtrip(dsn, empty_dsn, ["public"])  # create_all into an empty database, reflect, diff
    print(report.report())

Names are imported lazily (PEP 562) so ``workbench models export`` starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Database": "workbench.schema.model",
    "reflect": "workbench.schema.reflect",
    "reflect_dsn": "workbench.schema.reflect",
    "reflect_settings": "workbench.schema.reflect",
    "ReflectError": "workbench.schema.reflect",
    "generate": "workbench.schema.codegen",
    "GeneratedCode": "workbench.schema.codegen",
    "CodegenError": "workbench.schema.codegen",
    "VALID_OPTIONS": "workbench.schema.codegen",
    "diff": "workbench.schema.diff",
    "format_diff": "workbench.schema.diff",
    "Difference": "workbench.schema.diff",
    "roundtrip": "workbench.schema.roundtrip",
    "RoundTrip": "workbench.schema.roundtrip",
    "er_diagram": "workbench.schema.er",
    "MermaidDiagram": "workbench.schema.er",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench.schema' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
