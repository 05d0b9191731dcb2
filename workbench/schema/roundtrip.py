"""The measure of the generator's correctness: generate, import, ``create_all`` into an empty database,
reflect again, diff against the source.

The target is an empty database with nothing copied from the source: the generated module creates its
extensions, types, functions, triggers, tables, views and policies itself. On Supabase (and in the
throwaway databases of :func:`check`) the target has the platform's roles and ``auth``/``storage`` schemas,
as every project does. The same path runs any generator's code, so sqlacodegen's output can be measured
beside ours.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from workbench.schema import model as m
from workbench.schema.codegen import External, GeneratedCode, Layout, generate
from workbench.schema.diff import DEFAULT_IGNORE, Difference, describe_scope, diff, format_diff
from workbench.schema.reflect import plain_dsn, reflect

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy import MetaData


class RoundTripError(RuntimeError):
    """The round trip could not be set up (a missing optional tool, for example); says what to do."""


@dataclass
class RoundTrip:
    """What one round trip found. ``ok`` when every stage ran and the diff is empty."""

    generator: str
    schemas: list[str]
    code: str
    differences: list[Difference] = field(default_factory=list)
    stage: str = "done"  # the stage that failed: "import", "create_all", "reflect"; "done" when all ran
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    ignored: frozenset[str] = DEFAULT_IGNORE

    @property
    def ok(self) -> bool:
        return self.error is None and not self.differences

    def summary(self) -> str:
        """One line, e.g. ``workbench: 0 differences`` or ``sqlacodegen: failed at import: NameError ...``."""
        if self.error is not None:
            return f"{self.generator}: failed at {self.stage}: {self.error}"
        return f"{self.generator}: {len(self.differences)} difference{'s' * (len(self.differences) != 1)}"

    def scope(self) -> str:
        """What the diff compared and what it did not."""
        return describe_scope(self.ignored)

    def report(self) -> str:
        """The summary, each difference, then what was compared (a 0 says nothing about the rest)."""
        lines = [self.summary()]
        if self.differences:
            lines.append(format_diff(self.differences))
        if self.error is None:
            lines.append(self.scope())
        return "\n".join(lines)

    def counts(self) -> dict[str, int]:
        """Differences per category."""
        out: dict[str, int] = {}
        for d in self.differences:
            out[d.category] = out.get(d.category, 0) + 1
        return out


def import_code(code: str | GeneratedCode, workdir: Path) -> ModuleType:
    """Write generated code under ``workdir`` and import it as a fresh, uniquely named module."""
    name = f"wb_generated_{uuid.uuid4().hex[:12]}"
    if isinstance(code, GeneratedCode) and code.layout == "package":
        folder = workdir / name
        code.write(folder)
        spec = importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
    else:
        text = code.text if isinstance(code, GeneratedCode) else code
        path = workdir / f"{name}.py"
        path.write_text(text, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        forget(module)
        raise
    return module


def forget(module: ModuleType) -> None:
    """Drop imported generated code: its modules, and its mappers (so a half-imported module cannot break
    ``configure_mappers()`` for everything imported later)."""
    name = module.__name__
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        base = getattr(sys.modules[key], "Base", None)
        registry = getattr(base, "registry", None)
        if registry is not None:
            registry.dispose()
        del sys.modules[key]
    base = getattr(module, "Base", None)
    if getattr(base, "registry", None) is not None:
        base.registry.dispose()  # type: ignore[union-attr]


def metadata_of(module: ModuleType) -> MetaData:
    """``Base.metadata`` of generated code (ours or sqlacodegen's), else its module-level ``metadata``."""
    base = getattr(module, "Base", None)
    if base is not None and hasattr(base, "metadata"):
        return base.metadata  # type: ignore[no-any-return]
    found = getattr(module, "metadata", None)
    if found is None:
        raise RoundTripError("The generated code has neither Base.metadata nor a module-level metadata.")
    return found  # type: ignore[no-any-return]


async def create_all(metadata: MetaData, dsn: str) -> None:
    """``metadata.create_all`` on ``dsn`` through SQLAlchemy's asyncpg driver, in one transaction."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    url = "postgresql+asyncpg://" + plain_dsn(dsn).split("://", 1)[1]
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
    finally:
        await engine.dispose()


async def roundtrip(
    source_dsn: str,
    target_dsn: str,
    schemas: Sequence[str] = (m.DEFAULT_SCHEMA,),
    *,
    tables: Sequence[str] | None = None,
    options: Iterable[str] = (),
    external: External = "standin",
    layout: Layout = "file",
    code: str | GeneratedCode | None = None,
    generator: str = "workbench",
    ignore: Iterable[str] = DEFAULT_IGNORE,
) -> RoundTrip:
    """Generate models of ``schemas`` in ``source_dsn`` (or take ``code``), build them into the empty
    ``target_dsn`` with ``create_all``, reflect the target and diff it against the source."""
    import asyncpg

    clock = time.perf_counter
    times: dict[str, float] = {}
    source = await asyncpg.connect(plain_dsn(source_dsn))
    target = await asyncpg.connect(plain_dsn(target_dsn))
    workdir = Path(tempfile.mkdtemp(prefix="wb-roundtrip-"))
    module: ModuleType | None = None
    try:
        t0 = clock()
        expected = await reflect(source, schemas, tables)
        times["reflect_source"] = clock() - t0
        if code is None:
            t0 = clock()
            code = generate(expected, options, external=external, layout=layout)
            times["generate"] = clock() - t0
        text = code.text if isinstance(code, GeneratedCode) else code
        result = RoundTrip(
            generator=generator, schemas=list(schemas), code=text, seconds=times, ignored=frozenset(ignore)
        )
        t0 = clock()
        try:
            module = import_code(code, workdir)
            metadata = metadata_of(module)
        except Exception as exc:  # noqa: BLE001 - the report says what failed
            return _failed(result, "import", exc)
        times["import"] = clock() - t0
        t0 = clock()
        try:
            await create_all(metadata, target_dsn)
        except Exception as exc:  # noqa: BLE001
            return _failed(result, "create_all", exc)
        times["create_all"] = clock() - t0
        t0 = clock()
        actual = await reflect(target, schemas, tables) if await _has_schemas(target, schemas) else m.Database()
        times["reflect_target"] = clock() - t0
        result.differences = diff(expected, actual, schemas=schemas, ignore=ignore)
        return result
    finally:
        await source.close()
        await target.close()
        if module is not None:
            forget(module)
        shutil.rmtree(workdir, ignore_errors=True)


async def _has_schemas(conn: asyncpg.Connection, schemas: Sequence[str]) -> bool:
    found = await conn.fetchval("select count(*) from pg_namespace where nspname = any($1::text[])", list(schemas))
    return bool(found == len(set(schemas)))


def _failed(result: RoundTrip, stage: str, exc: BaseException) -> RoundTrip:
    result.stage = stage
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    result.error = f"{type(exc).__name__}: {first}"[:400]
    return result


def sqlacodegen_code(dsn: str, schemas: Sequence[str] = (m.DEFAULT_SCHEMA,), options: Sequence[str] = ()) -> str:
    """sqlacodegen's declarative output for ``schemas``, produced in this process the way its CLI does.

    sqlacodegen is synchronous: it reflects through psycopg. ``public`` is reflected as the default schema,
    as ``sqlacodegen postgresql://...`` does without ``--schemas``.
    """
    try:
        from sqlacodegen.generators import DeclarativeGenerator
        from sqlalchemy import MetaData, create_engine
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RoundTripError(
            "sqlacodegen is needed for this comparison: pip install sqlacodegen 'psycopg[binary]'"
        ) from exc
    url = "postgresql+psycopg://" + plain_dsn(dsn).split("://", 1)[1]
    engine = create_engine(url)
    try:
        metadata = MetaData()
        for schema in schemas:
            metadata.reflect(engine, None if schema == m.DEFAULT_SCHEMA else schema, True)
        return str(DeclarativeGenerator(metadata, engine, list(options)).generate())
    finally:
        engine.dispose()


def side_by_side(*results: RoundTrip) -> str:
    """A small table: generator, outcome, differences per category."""
    lines = []
    for r in results:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r.counts().items())) or "-"
        outcome = f"failed at {r.stage}" if r.error else f"{len(r.differences)} differences"
        lines.append(f"{r.generator:<28} {outcome:<22} {counts}")
        if r.error:
            lines.append(f"{'':<28} {r.error}")
    return "\n".join(lines)


async def create_scratch_database(server_dsn: str, *, supabase: bool = True) -> str:
    """A new empty database on ``server_dsn``'s server (uniquely named); returns its DSN.

    With ``supabase`` it gets what every Supabase project has before its own migrations: the roles, the
    ``auth``/``storage``/``extensions`` schemas and ``auth.uid()`` and friends (the stand-in's bootstrap).
    """
    import asyncpg

    from workbench.local.standin import BOOTSTRAP_SQL

    name = f"wb_check_{uuid.uuid4().hex[:12]}"
    plain = plain_dsn(server_dsn)
    conn = await asyncpg.connect(plain)
    try:
        await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    dsn = _with_database(plain, name)
    if supabase:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(BOOTSTRAP_SQL.read_text())
        finally:
            await conn.close()
    return dsn


async def drop_scratch_database(server_dsn: str, dsn: str) -> None:
    """Drop a database made by :func:`create_scratch_database` (refuses any other name)."""
    import asyncpg

    name = _database_of(dsn)
    if not name.startswith("wb_check_"):
        raise RoundTripError(f"{name!r} was not made by create_scratch_database; not dropping it.")
    conn = await asyncpg.connect(plain_dsn(server_dsn))
    try:
        await conn.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await conn.close()


def _database_of(dsn: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(dsn).path.lstrip("/")


def _with_database(dsn: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def check(
    source_dsn: str,
    schemas: Sequence[str] = (m.DEFAULT_SCHEMA,),
    *,
    server_dsn: str | None = None,
    tables: Sequence[str] | None = None,
    options: Iterable[str] = (),
    external: External = "standin",
    layout: Layout = "file",
    ignore: Iterable[str] = DEFAULT_IGNORE,
) -> RoundTrip:
    """The "check" action: export, build into a throwaway Supabase-like database, diff against the source.

    The throwaway database lives on ``server_dsn``'s server (default: the source's server, right for the
    local stand-in; pass the stand-in's DSN to check a remote project) and is dropped afterwards.
    """
    server = server_dsn or source_dsn
    target = await create_scratch_database(server)
    try:
        return await roundtrip(
            source_dsn, target, schemas, tables=tables, options=options, external=external, layout=layout, ignore=ignore
        )
    finally:
        await drop_scratch_database(server, target)
