"""RLS policy testing: a matrix of what each identity may do to each table, its export as pytest tests,
and database advisors (Supabase's lints) with remediation SQL.

    matrix = await policy_matrix(engine, identities, ["public.tasks"])   # matrix.py: nothing is committed
    export_pytest(matrix, "tests/test_policies.py")                      # export.py: the same outcomes, as tests
    lints = await advisors(engine)                                       # advisors.py: shown, never applied
    measured = await measure_initplan(asyncpg_conn)                      # initplan.py: the (select ...) wrap

``model.py`` holds the plain result dataclasses, ``probes.py`` derives what to try from the catalogs.
Submodules are imported lazily so the magics start fast.
"""
