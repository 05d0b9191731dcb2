"""Claims JSON that PostgreSQL cannot carry is refused with a clear IdentityError, never a bare
ValueError/RecursionError from deep inside json or asyncpg."""

from __future__ import annotations

import pytest

from workbench.core.identity import MAX_CLAIMS_DEPTH, Identity, IdentityError, parse_claims


def test_a_nul_in_claims_is_refused_clearly() -> None:
    with pytest.raises(IdentityError, match="NUL"):
        parse_claims('{"user_role": "ad\\u0000min"}')
    with pytest.raises(IdentityError, match="NUL"):
        parse_claims('{"a": 1}\x00')
    with pytest.raises(IdentityError, match="NUL"):
        Identity.from_claims({"role": "authenticated", "app_metadata": {"k\x00": 1}})
    with pytest.raises(IdentityError, match="NUL"):
        Identity.for_role("authenticated").with_claims({"x": ["ok", "n\x00"]})


@pytest.mark.parametrize("depth", [MAX_CLAIMS_DEPTH + 1, 5_000, 200_000])
def test_deep_nesting_is_refused_clearly(depth: int) -> None:
    text = '{"a": ' + "[" * depth + "]" * depth + "}"
    with pytest.raises(IdentityError, match="nested"):
        parse_claims(text)


def test_ordinary_claims_still_pass() -> None:
    claims = parse_claims('{"user_role": "admin", "org": {"teams": [{"id": 1}]}}')
    assert Identity.for_role("authenticated").with_claims(claims).claims["org"] == {"teams": [{"id": 1}]}
