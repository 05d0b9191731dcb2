"""RLS policy testing: a matrix of what each identity may do to each table, its export as pytest tests,
and database advisors (Supabase's lints) with remediation SQL.

    matrix = await policy_matrix(engine, identities, ["public.tasks"])   # nothing is ever committed
    export_pytest(matrix, "tests/test_policies.py")                      # the same outcomes, as tests
    lints = await run_advisors(engine)                                   # name, level, detail, remediation

Submodules are imported lazily so the magics start fast.
"""
