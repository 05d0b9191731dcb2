"""Schema reflection, SQLAlchemy model generation with round-trip checks, diff and ER diagrams.

    db = await reflect_dsn(dsn, ["public"])          # one plain model of the database
    code = generate(db, options={"nobidi"})          # SQLAlchemy 2.0 typed declarative source
    report = await roundtrip(dsn, empty_dsn, ["public"])   # create_all, reflect again, diff

Submodules are imported lazily so ``workbench models export`` starts fast.
"""
