"""Load held: a short soak (~25 s; ``python -m reliability.soak --minutes N`` is the long one) of impersonated
queries, ORM sessions and storage operations through PgBouncer in transaction mode: zero errors, every answer
right for its identity, and no growth in connections, tasks or memory beyond :data:`reliability.soak.BOUNDS`."""

from __future__ import annotations

import os

import pytest

from reliability.figures import Figures
from reliability.soak import BOUNDS, run_soak
from workbench.local.standin import LocalStandIn

SECONDS = float(os.environ.get("WORKBENCH_SOAK_SECONDS", "22"))


@pytest.mark.pgbouncer
@pytest.mark.slow
async def test_soak_through_pgbouncer_holds(standin: LocalStandIn, pgbouncer_factory, figures: Figures) -> None:  # type: ignore[no-untyped-def]
    bouncer = pgbouncer_factory(pool_size=2)
    keys = standin.keys()
    report = await run_soak(
        db_dsn=standin.dsn(),
        pooler_dsn=bouncer.dsn,
        api_url=standin.api_url(),
        anon_key=keys.anon_key,
        service_role_key=keys.service_role_key,
        jwt_secret=keys.jwt_secret,
        seconds=SECONDS,
    )
    print(report.render())
    figures.put("load", "seconds", round(report.seconds))
    figures.put("load", "operations", report.total)
    for kind, count in report.operations.items():
        figures.put("load", f"operations_{kind}", count)
    figures.put("load", "errors", len(report.errors))
    figures.put("load", "wrong_answers", len(report.wrong_answers))
    figures.put("load", "connection_growth", report.connections["end"] - report.connections["start"])
    figures.put("load", "connections_peak", report.connections["peak"])
    figures.put("load", "task_growth", report.tasks["end"] - report.tasks["start"])
    figures.put("load", "rss_growth_mb", round(report.rss_mb["end"] - report.rss_mb["start"], 1))
    figures.put("load", "traced_growth_mb", round(report.traced_mb["end"] - report.traced_mb["start"], 2))
    assert report.violations() == [], report.render()
    assert report.total >= 200 and set(report.operations) == {"query", "orm", "storage"}, report.render()
    assert report.bounds == BOUNDS
