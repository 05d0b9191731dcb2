"""Who a query runs as: anon, a user from ``auth.users``, service_role, any role, plus custom claims.

An :class:`Identity` is a database role and the JWT claims Supabase would put in
``request.jwt.claims`` for it; :mod:`workbench.core.impersonation` applies it to a transaction.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from workbench.backend.tokens import access_token_claims, api_key_claims
from workbench.core.exceptions import WorkbenchUserError

if TYPE_CHECKING:
    import asyncpg

_ROLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
API_ROLES = ("anon", "authenticated", "service_role")


class IdentityError(WorkbenchUserError, ValueError):
    """An identity that cannot be used: unknown user or role, malformed claims. Says what to do."""


@dataclass(frozen=True)
class Identity:
    """A database role and the claims that go with it. ``role=None`` keeps the connection's own role."""

    role: str | None
    claims: Mapping[str, Any] | None = field(default=None, compare=True)
    label: str = ""

    def __post_init__(self) -> None:
        if self.role is not None and not _ROLE_NAME.match(self.role):
            raise IdentityError(f"{self.role!r} is not a valid role name (letters, digits, _ and $, at most 63).")

    # -- constructors --------------------------------------------------------------------------------
    @classmethod
    def none(cls) -> Identity:
        """The connection's own role (``postgres`` locally) with no JWT claims: no impersonation."""
        return cls(role=None, claims=None, label="postgres (no impersonation)")

    @classmethod
    def anon(cls, ref: str = "local") -> Identity:
        return cls(role="anon", claims=api_key_claims("anon", ref=ref, years=0) | _short_exp(), label="anon")

    @classmethod
    def service_role(cls, ref: str = "local") -> Identity:
        claims = api_key_claims("service_role", ref=ref, years=0) | _short_exp()
        return cls(role="service_role", claims=claims, label="service_role")

    @classmethod
    def for_role(cls, role: str, ref: str = "local") -> Identity:
        """Any database role; anon and service_role get Supabase's API-key claims."""
        if role == "anon":
            return cls.anon(ref)
        if role == "service_role":
            return cls.service_role(ref)
        return cls(role=role, claims={"role": role, "iat": int(time.time())} | _short_exp(), label=role)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], label: str | None = None) -> Identity:
        """The identity of verified JWT claims (for example in a FastAPI dependency)."""
        role = claims.get("role")
        if not isinstance(role, str):
            raise IdentityError("The claims have no 'role' string; a Supabase token always carries one.")
        check_claims(claims)
        sub = claims.get("sub")
        return cls(role=role, claims=dict(claims), label=label or str(claims.get("email") or sub or role))

    def with_claims(self, extra: Mapping[str, Any] | str | None) -> Identity:
        """Extra or overriding claims (for example a ``user_role`` a custom access-token hook adds)."""
        if extra is None or extra == "":
            return self
        parsed = parse_claims(extra) if isinstance(extra, str) else dict(extra)
        check_claims(parsed)
        merged = dict(self.claims or {}) | parsed
        role = self.role
        if "role" in parsed:
            role = str(parsed["role"])
        suffix = ", ".join(f"{k}={v}" for k, v in parsed.items() if k != "role")
        label = f"{self.label} + {suffix}" if suffix else self.label
        if role != self.role:  # say so: a role claim changes what RLS does (service_role bypasses it)
            label = f"{label} as role {role}"
        return replace(self, role=role, claims=merged, label=label)

    # -- what gets applied ---------------------------------------------------------------------------
    @property
    def sub(self) -> str | None:
        value = (self.claims or {}).get("sub")
        return str(value) if value is not None else None

    def claims_json(self) -> str:
        return json.dumps(dict(self.claims), separators=(",", ":"), default=str) if self.claims else ""

    def describe(self) -> str:
        return self.label or (self.role or "postgres")


def _short_exp() -> dict[str, int]:
    now = int(time.time())
    return {"iat": now, "exp": now + 3600}


def parse_claims(text: str) -> dict[str, Any]:
    """Parse a claims JSON object, with an error that points at the problem."""
    if "\x00" in text:
        raise IdentityError("The claims JSON contains a NUL character, which PostgreSQL cannot store. Remove it.")
    try:
        value = json.loads(text)
    except RecursionError:
        raise IdentityError(
            f"The claims are nested too deeply for JSON parsing (keep them under {MAX_CLAIMS_DEPTH} levels)."
        ) from None
    except json.JSONDecodeError as exc:
        raise IdentityError(
            f"The claims are not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
            'Write an object such as {"user_role": "admin"}; in a magic, quote it: --claims \'{"a": 1}\'.'
        ) from None
    if not isinstance(value, dict):
        raise IdentityError(
            f'The claims must be a JSON object such as {{"user_role": "admin"}}, not {type(value).__name__}.'
        )
    check_claims(value)
    return value


MAX_CLAIMS_DEPTH = 64


def check_claims(claims: Mapping[str, Any]) -> None:
    """Refuse what PostgreSQL's ``request.jwt.claims`` cannot carry: a NUL (``\\u0000``) anywhere, or
    nesting deeper than :data:`MAX_CLAIMS_DEPTH` (real tokens are a few levels deep)."""
    stack: list[tuple[Any, int]] = [(claims, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_CLAIMS_DEPTH:
            raise IdentityError(f"The claims JSON is nested more than {MAX_CLAIMS_DEPTH} levels deep; flatten it.")
        if isinstance(value, str):
            if "\x00" in value:
                raise IdentityError(
                    "The claims JSON contains a NUL character, which PostgreSQL cannot store. Remove it."
                )
        elif isinstance(value, Mapping):
            stack.extend((k, depth + 1) for k in value)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1) for v in value)


async def user_identity(
    conn: asyncpg.Connection,
    who: str,
    *,
    issuer: str = "http://127.0.0.1/auth/v1",
    extra_claims: Mapping[str, Any] | str | None = None,
) -> Identity:
    """An authenticated user from ``auth.users`` by uuid or email, with the claims Supabase would mint."""
    key = who.strip()
    try:
        uid: uuid.UUID | None = uuid.UUID(key)
    except ValueError:
        uid = None
    if uid is not None:
        row = await conn.fetchrow("select * from auth.users where id = $1", uid)
    else:
        row = await conn.fetchrow("select * from auth.users where lower(email) = lower($1)", key)
    if row is None:
        kind = "id" if uid is not None else "email"
        raise IdentityError(
            f"No user with {kind} {key!r} in auth.users. Search users with `%sbimpersonate` (no arguments) "
            "or `await workbench.find_users('...')`, or create the user first."
        )
    claims = access_token_claims(
        str(row["id"]),
        email=row["email"],
        phone=row["phone"],
        role=row["role"] or "authenticated",
        aud=row["aud"] or "authenticated",
        iss=issuer,
        app_metadata=json_object(row["raw_app_meta_data"]),
        user_metadata=json_object(row["raw_user_meta_data"]),
        is_anonymous=bool(row["is_anonymous"]),
    )
    identity = Identity(role=claims["role"], claims=claims, label=row["email"] or str(row["id"]))
    return identity.with_claims(extra_claims)


async def check_role(conn: asyncpg.Connection, role: str) -> None:
    """Raise a clear error when ``role`` is not a role of this database."""
    if await conn.fetchval("select 1 from pg_roles where rolname = $1", role) is None:
        known = await conn.fetch(
            "select rolname from pg_roles where rolname !~ '^pg_' order by rolname != 'anon', rolname"
        )
        names = ", ".join(r[0] for r in known[:12])
        raise IdentityError(f"Role {role!r} does not exist in this database. Roles you can use: {names}.")


async def find_users(conn: asyncpg.Connection, text: str = "", limit: int = 20) -> list[dict[str, Any]]:
    """Users whose email or id contains ``text`` (for the identity picker)."""
    rows = await conn.fetch(
        """select id, email, phone, role, raw_app_meta_data, raw_user_meta_data, created_at
           from auth.users
           where $1 = '' or email ilike '%' || $1 || '%' or id::text like $1 || '%'
           order by email nulls last limit $2""",
        text.strip(),
        limit,
    )
    return [dict(r) for r in rows]


def json_object(value: Any) -> dict[str, Any]:
    """A jsonb column's value as a dict, whether the driver decoded it or not (NULL or non-object: {})."""
    if value is None:
        return {}
    if isinstance(value, str):
        loaded = json.loads(value)
        return loaded if isinstance(loaded, dict) else {}
    return dict(value)
