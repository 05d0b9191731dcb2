"""``?sslmode=...`` in ``SUPABASE_DB_URL`` (as the dashboard offers it): mapped to asyncpg's ``ssl`` for the
engine, kept for plain DSNs, and a settings error (not a TypeError at query time) when it cannot work."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from workbench.core.engine import create_engine
from workbench.core.settings import Settings, SettingsError, asyncpg_engine_url


def test_sslmode_becomes_asyncpg_ssl() -> None:
    url = asyncpg_engine_url(make_url("postgresql+asyncpg://u:p@db.example.com:5432/postgres?sslmode=require"))
    assert dict(url.query) == {"ssl": "require"}
    assert dict(asyncpg_engine_url(make_url("postgresql+asyncpg://u@h/d")).query) == {}


def test_libpq_only_parameters_are_a_settings_error_naming_them() -> None:
    with pytest.raises(SettingsError, match="channel_binding") as err:
        asyncpg_engine_url(make_url("postgresql+asyncpg://u:secret-pw@h/d?channel_binding=require"))
    assert "secret-pw" not in str(err.value)
    with pytest.raises(SettingsError, match="sslmode must be one of"):
        asyncpg_engine_url(make_url("postgresql+asyncpg://u@h/d?sslmode=sometimes"))


def test_a_bad_sslmode_fails_when_settings_load() -> None:
    with pytest.raises(SettingsError, match="sslmode"):
        Settings(db_url="postgresql://postgres:pw@db.abcdefghijklmnopqrst.supabase.co:5432/postgres?sslmode=on")


async def test_engine_connects_with_sslmode_in_the_url(db_url: str) -> None:
    """The local stand-in has no TLS: ``prefer`` connects; ``require`` is refused by the server's answer,
    not by a TypeError about an unexpected keyword."""
    base = make_url(db_url).set(drivername="postgresql+asyncpg")
    engine = create_engine(base.update_query_dict({"sslmode": "prefer"}))
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("select 1")) == 1
    finally:
        await engine.dispose()
    engine = create_engine(base.update_query_dict({"sslmode": "require"}))
    try:
        with pytest.raises(Exception) as refused:
            async with engine.connect() as conn:
                await conn.scalar(text("select 1"))
        assert not isinstance(refused.value, TypeError)
        assert "ssl" in str(refused.value).lower()
    finally:
        await engine.dispose()
