"""Workbench identity lookups: reused for a few seconds, dropped on identity change, never cached on error."""

from __future__ import annotations

import pytest

import workbench
from workbench.core.identity import IdentityError
from workbench.core.settings import Settings


async def test_a_resolved_identity_is_reused_until_its_ttl_or_a_change(settings: Settings) -> None:
    wb = workbench.Workbench(settings)
    now = [1000.0]
    wb._clock = lambda: now[0]
    lookups = 0
    real = wb._look_up_identity

    async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal lookups
        lookups += 1
        return await real(*args, **kwargs)

    wb._look_up_identity = counted  # type: ignore[method-assign]
    try:
        first = await wb.resolve_identity("alice@example.com")
        again = await wb.resolve_identity("alice@example.com", claims={"x": 1})
        assert lookups == 1 and again.claims["sub"] == first.claims["sub"] and again.claims["x"] == 1
        now[0] += wb.IDENTITY_TTL + 0.1
        await wb.resolve_identity("alice@example.com")
        assert lookups == 2
        wb.impersonate(first)  # an identity change drops the cache
        await wb.resolve_identity("alice@example.com")
        assert lookups == 3
        for _ in range(2):  # a failed lookup is looked up again, never cached
            with pytest.raises(IdentityError, match="No user with email"):
                await wb.resolve_identity("nobody@example.com")
        assert lookups == 5
    finally:
        await wb.aclose()
