"""The measure of the generator's correctness: generate, import, ``create_all`` into an empty database,
reflect again, diff against the source.

Functions are not part of SQLAlchemy models, yet defaults, views and policies call them (``auth.uid()``,
Pagila's ``group_concat``): :func:`copy_functions` copies the source's functions and simple aggregates into
the target first (with body checks off; the few whose signature names a table are retried after
``create_all``). The same path runs any generator's code, so sqlacodegen's output can be measured beside ours.
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
from workbench.schema.diff import DEFAULT_IGNORE, Difference, diff, format_diff
from workbench.schema.reflect import plain_dsn, reflect
from workbench.sqlnames import qualified_name, quote_ident

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy import MetaData

_FUNCTIONS = """
select n.nspname as schema, p.proname as name, p.prokind::text as kind,
       case when p.prokind in ('f', 'p', 'w') then pg_get_functiondef(p.oid) end as definition,
       pg_get_function_identity_arguments(p.oid) as args,
       a.aggkind::text as aggkind, a.aggtransfn::regproc::text as sfunc, format_type(a.aggtranstype, null) as stype,
       nullif(a.aggfinalfn::oid, 0)::regproc::text as finalfunc, a.agginitval as initcond,
       nullif(a.aggcombinefn::oid, 0)::regproc::text as combinefunc
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
  left join pg_aggregate a on a.aggfnoid = p.oid
 where n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
   and not exists (select 1 from pg_depend e where e.classid = 'pg_proc'::regclass and e.objid = p.oid
                     and e.deptype = 'e')
 order by p.oid
"""


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
    functions_copied: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.differences

    def summary(self) -> str:
        """One line, e.g. ``workbench: 0 differences`` or ``sqlacodegen: failed at import: NameError ...``."""
        if self.error is not None:
            return f"{self.generator}: failed at {self.stage}: {self.error}"
        return f"{self.generator}: {len(self.differences)} difference{'s' * (len(self.differences) != 1)}"

    def report(self) -> str:
        return self.summary() + ("\n" + format_diff(self.differences) if self.differences else "")

    def counts(self) -> dict[str, int]:
        """Differences per category."""
        out: dict[str, int] = {}
        for d in self.differences:
            out[d.category] = out.get(d.category, 0) + 1
        return out


async def copy_functions(source: asyncpg.Connection, target: asyncpg.Connection) -> tuple[int, list[str]]:
    """Create the source's functions and simple aggregates in the target (schemas too).

    Returns (created, deferred statements). Deferred ones failed now (their signature names a table
    not created yet): pass them to :func:`retry_statements` after ``create_all``.
    """
    async with source.transaction(readonly=True):
        await source.execute("select set_config('search_path', 'pg_catalog', true)")
        rows = await source.fetch(_FUNCTIONS)
    schemas = sorted({r["schema"] for r in rows})
    statements: list[str] = [f"create schema if not exists {quote_ident(s)}" for s in schemas]
    for row in rows:
        if row["definition"]:
            statements.append(row["definition"])
        elif row["kind"] == "a" and row["aggkind"] == "n":
            parts = [f"SFUNC = {row['sfunc']}", f"STYPE = {row['stype']}"]
            if row["finalfunc"]:
                parts.append(f"FINALFUNC = {row['finalfunc']}")
            if row["combinefunc"]:
                parts.append(f"COMBINEFUNC = {row['combinefunc']}")
            if row["initcond"] is not None:
                parts.append("INITCOND = '" + row["initcond"].replace("'", "''") + "'")
            statements.append(
                f"CREATE AGGREGATE {qualified_name(row['schema'], row['name'])}({row['args']}) ({', '.join(parts)})"
            )
    created, deferred = await _run_each(target, statements)
    return created, deferred


async def retry_statements(target: asyncpg.Connection, statements: Sequence[str]) -> list[str]:
    """Run the deferred statements again; returns those that still fail."""
    _, still = await _run_each(target, statements)
    return still


async def _run_each(conn: asyncpg.Connection, statements: Sequence[str]) -> tuple[int, list[str]]:
    created, failed = 0, []
    async with conn.transaction():
        await conn.execute("set local check_function_bodies = off")
        for sql in statements:
            try:
                async with conn.transaction():
                    await conn.execute(sql)
                created += 1
            except Exception:  # noqa: BLE001 - retried after create_all; reported if it still fails
                failed.append(sql)
    return created, failed


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
    functions: bool = True,
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
        result = RoundTrip(generator=generator, schemas=list(schemas), code=text, seconds=times)
        t0 = clock()
        try:
            module = import_code(code, workdir)
            metadata = metadata_of(module)
        except Exception as exc:  # noqa: BLE001 - the report says what failed
            return _failed(result, "import", exc)
        times["import"] = clock() - t0
        deferred: list[str] = []
        if functions:
            result.functions_copied, deferred = await copy_functions(source, target)
        t0 = clock()
        try:
            await create_all(metadata, target_dsn)
        except Exception as exc:  # noqa: BLE001
            return _failed(result, "create_all", exc)
        times["create_all"] = clock() - t0
        if deferred:
            await retry_statements(target, deferred)
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
