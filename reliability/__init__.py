"""The reliability and security suite's long-running commands and the helpers its tests share.

``python -m reliability.soak --minutes N`` soaks a fresh local stand-in through PgBouncer;
``python -m reliability.report`` runs ``tests/reliability`` and prints the figures table.
"""
