"""Read a database's structure from the PostgreSQL catalogs into :class:`~workbench.schema.model.Database`.

A handful of set-based ``pg_catalog`` queries on one connection (not ``information_schema``, whose views
are slow on large schemas and miss enums, partitions, policies and index details). Everything runs in one
read-only transaction with ``search_path=pg_catalog`` and ``TimeZone=UTC``, so deparsed SQL is fully
qualified and the same in every database: that is what makes two reflections comparable text for text.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from workbench.core.exceptions import WorkbenchUserError
from workbench.schema import model as m
from workbench.schema.naming import quote_ident as _quote

if TYPE_CHECKING:
    import asyncpg

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``: called after each catalog query."""

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
_STEPS = 11

_SESSION = """select set_config('search_path', 'pg_catalog', true), set_config('timezone', 'UTC', true),
       set_config('datestyle', 'ISO, YMD', true), set_config('intervalstyle', 'postgres', true)"""

_NOT_EXTENSION_MEMBER = """not exists (select 1 from pg_depend e where e.classid = 'pg_class'::regclass
                         and e.objid = c.oid and e.deptype = 'e')"""

_RELATIONS = f"""
select c.oid, n.nspname as schema, c.relname as name, c.relkind::text as relkind, c.relpersistence::text as persistence,
       c.relrowsecurity, c.relforcerowsecurity, c.relispopulated, d.description as comment,
       case when c.relkind = 'p' then pg_get_partkeydef(c.oid) end as partition_key,
       case when c.relispartition then pg_get_expr(c.relpartbound, c.oid) end as partition_bound,
       (select array[pn.nspname::text, pc.relname::text] from pg_inherits h
          join pg_class pc on pc.oid = h.inhparent join pg_namespace pn on pn.oid = pc.relnamespace
         where h.inhrelid = c.oid and c.relispartition) as parent,
       case when c.relkind in ('v', 'm') then pg_get_viewdef(c.oid, true) end as view_definition,
       c.reloptions::text[] as reloptions, c.relreplident::text as replident,
       (select ic.relname from pg_index i join pg_class ic on ic.oid = i.indexrelid
         where i.indrelid = c.oid and i.indisreplident limit 1) as replica_index,
       (select ic.relname from pg_index i join pg_class ic on ic.oid = i.indexrelid
         where i.indrelid = c.oid and i.indisclustered limit 1) as clustered_index,
       (select json_object_agg(r.rolname, g.privs)::text
          from (select a.grantee, array_agg(a.privilege_type::text order by a.privilege_type) as privs
                  from aclexplode(c.relacl) a group by a.grantee) g
          join pg_roles r on r.oid = g.grantee
         where r.rolname in ('anon', 'authenticated', 'service_role')) as grants
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  left join pg_description d on d.objoid = c.oid and d.classoid = 'pg_class'::regclass and d.objsubid = 0
 where c.relkind in ('r', 'p', 'v', 'm', 'f') and {{where}} and {_NOT_EXTENSION_MEMBER}
 order by n.nspname, c.relname
"""

_CONSTRAINTS = """
select co.conrelid, co.conname, co.contype::text as contype,
       co.conkey, co.confrelid, fn.nspname as ref_schema, fc.relname as ref_table, co.confkey,
       co.confupdtype::text as on_update, co.confdeltype::text as on_delete, co.confmatchtype::text as match,
       co.condeferrable, co.condeferred, pg_get_constraintdef(co.oid) as definition,
       co.conparentid <> 0 or (co.coninhcount > 0 and not co.conislocal) as inherited,
       {nulls_not_distinct} as nulls_not_distinct
  from pg_constraint co
  left join pg_class fc on fc.oid = co.confrelid
  left join pg_namespace fn on fn.oid = fc.relnamespace
  left join pg_index ix on ix.indexrelid = co.conindid and co.contype = 'u'
 where co.conrelid = any($1::oid[]) and co.contype in ('p', 'f', 'u', 'c', 'x')
 order by co.conrelid, co.conname
"""

_COLUMNS = """
select a.attrelid, a.attnum, a.attname as name, format_type(a.atttypid, a.atttypmod) as type_sql, a.attndims,
       a.attnotnull, a.attidentity::text as identity, a.attgenerated::text as generated,
       case when a.atthasdef then pg_get_expr(ad.adbin, ad.adrelid) end as default_expr,
       cd.description as comment,
       case when a.attcollation <> 0 and a.attcollation <> t.typcollation
            then (select cl.collname::text from pg_collation cl where cl.oid = a.attcollation) end as collation,
       (t.typelem <> 0 and t.typsubscript = 'array_subscript_handler'::regproc) as is_array,
       et.oid as type_oid, et.typname as type_name, en.nspname as type_schema, et.typtype::text as typtype,
       case when et.typtype = 'd' then et.typbasetype end as base_type_oid,
       (select b.typcategory::text from pg_type b
         where b.oid = case when et.typtype = 'd' then et.typbasetype else et.oid end) as category
  from pg_attribute a
  join pg_type t on t.oid = a.atttypid
  join pg_type et on et.oid = case when t.typelem <> 0 and t.typsubscript = 'array_subscript_handler'::regproc
                                   then t.typelem else t.oid end
  join pg_namespace en on en.oid = et.typnamespace
  left join pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum
  left join pg_description cd on cd.objoid = a.attrelid and cd.classoid = 'pg_class'::regclass
                             and cd.objsubid = a.attnum
 where a.attrelid = any($1::oid[]) and a.attnum > 0 and not a.attisdropped
 order by a.attrelid, a.attnum
"""

_INDEXES = """
select i.indrelid, ic.relname as name, i.indisunique, i.indnkeyatts, i.indnatts, am.amname,
       pg_get_indexdef(i.indexrelid) as definition, pg_get_expr(i.indpred, i.indrelid) as predicate,
       array(select pg_get_indexdef(i.indexrelid, k, true) from generate_series(1, i.indnatts) k) as col_defs,
       i.indkey::int2[] as keys, i.indoption::int2[] as options,
       array(select case when opc.opcdefault then null
                         when opn.nspname = 'pg_catalog' then quote_ident(opc.opcname)
                         else quote_ident(opn.nspname) || '.' || quote_ident(opc.opcname) end
               from unnest(i.indclass::oid[]) with ordinality k(o, n)
               join pg_opclass opc on opc.oid = k.o join pg_namespace opn on opn.oid = opc.opcnamespace
              order by k.n) as opclasses,
       ic.reloptions::text[] as reloptions, {nulls_not_distinct} as nulls_not_distinct,
       exists (select 1 from pg_inherits h where h.inhrelid = i.indexrelid) as inherited
  from pg_index i
  join pg_class ic on ic.oid = i.indexrelid
  join pg_am am on am.oid = ic.relam
 where i.indrelid = any($1::oid[])
   and not exists (select 1 from pg_constraint co where co.conindid = i.indexrelid and co.conrelid = i.indrelid
                     and co.contype in ('p', 'u', 'x'))
 order by i.indrelid, ic.relname
"""

_POLICIES = """
select p.polrelid, p.polname, p.polcmd::text as cmd, p.polpermissive,
       array(select case when r = 0 then 'public' else (select rolname::text from pg_roles where oid = r) end
               from unnest(p.polroles) r) as roles,
       pg_get_expr(p.polqual, p.polrelid) as using_expr, pg_get_expr(p.polwithcheck, p.polrelid) as check_expr
  from pg_policy p
 where p.polrelid = any($1::oid[])
 order by p.polrelid, p.polname
"""

_SEQUENCES = """
select n.nspname as schema, c.relname as name, format_type(s.seqtypid, null) as data_type,
       s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
       d.deptype::text as deptype, d.refobjid, d.refobjsubid,
       rn.nspname as owner_schema, rc.relname as owner_table, ra.attname as owner_column
  from pg_sequence s
  join pg_class c on c.oid = s.seqrelid
  join pg_namespace n on n.oid = c.relnamespace
  left join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = c.oid
                       and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
  left join pg_class rc on rc.oid = d.refobjid
  left join pg_namespace rn on rn.oid = rc.relnamespace
  left join pg_attribute ra on ra.attrelid = d.refobjid and ra.attnum = d.refobjsubid
 where (n.nspname = any($1::text[]) or d.refobjid = any($2::oid[])) and {not_extension}
 order by n.nspname, c.relname
"""

_TYPES = """
select t.oid, n.nspname as schema, t.typname as name, t.typtype::text as typtype, d.description as comment,
       case when t.typtype = 'e'
            then array(select e.enumlabel::text from pg_enum e where e.enumtypid = t.oid order by e.enumsortorder)
       end as labels,
       format_type(t.typbasetype, t.typtypmod) as base_sql, t.typndims,
       (bt.typelem <> 0 and bt.typsubscript = 'array_subscript_handler'::regproc) as base_is_array,
       bet.typname as base_name, ben.nspname as base_schema, bet.typtype::text as base_typtype,
       t.typnotnull, t.typdefault,
       case when t.typcollation <> 0 and t.typcollation <> bt.typcollation
            then (select cl.collname::text from pg_collation cl where cl.oid = t.typcollation) end as collation,
       array(select array[co.conname::text, pg_get_constraintdef(co.oid)] from pg_constraint co
              where co.contypid = t.oid and co.contype = 'c' order by co.conname) as checks
  from pg_type t
  join pg_namespace n on n.oid = t.typnamespace
  left join pg_type bt on bt.oid = t.typbasetype
  left join pg_type bet on bet.oid = case when bt.typelem <> 0 and bt.typsubscript = 'array_subscript_handler'::regproc
                                          then bt.typelem else bt.oid end
  left join pg_namespace ben on ben.oid = bet.typnamespace
  left join pg_description d on d.objoid = t.oid and d.classoid = 'pg_type'::regclass and d.objsubid = 0
 where t.typtype in ('e', 'd') and (n.nspname = any($1::text[]) or t.oid = any($2::oid[]))
   and not exists (select 1 from pg_depend x where x.classid = 'pg_type'::regclass and x.objid = t.oid
                     and x.deptype = 'e')
 order by n.nspname, t.typname
"""

_VIEW_DEPENDENCIES = """
select distinct r.ev_class as view_oid, dn.nspname as schema, dc.relname as name
  from pg_rewrite r
  join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid and d.refclassid = 'pg_class'::regclass
  join pg_class dc on dc.oid = d.refobjid
  join pg_namespace dn on dn.oid = dc.relnamespace
 where r.ev_class = any($1::oid[]) and d.refobjid <> r.ev_class
 order by 1, 2, 3
"""

_FUNCTIONS = """
select p.oid, n.nspname as schema, p.proname as name, p.prokind::text as kind,
       case when p.prokind in ('f', 'p', 'w') then pg_get_functiondef(p.oid) end as definition,
       pg_get_function_identity_arguments(p.oid) as args, d.description as comment,
       (select json_object_agg(r.rolname, g.privs)::text
          from (select a.grantee, array_agg(a.privilege_type::text order by a.privilege_type) as privs
                  from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a group by a.grantee) g
          join pg_roles r on r.oid = g.grantee
         where r.rolname in ('anon', 'authenticated', 'service_role')) as grants,
       a.aggkind::text as aggkind, a.aggtransfn::regproc::text as sfunc, format_type(a.aggtranstype, null) as stype,
       nullif(a.aggfinalfn::oid, 0)::regproc::text as finalfunc, a.agginitval as initcond,
       nullif(a.aggcombinefn::oid, 0)::regproc::text as combinefunc,
       (select coalesce(json_agg(json_build_array(rn.nspname, rc.relname) order by rn.nspname, rc.relname), '[]')::text
          from pg_class rc
          join pg_namespace rn on rn.oid = rc.relnamespace
         where rc.oid in (  -- row types in the signature, and relations a SQL-standard body (BEGIN ATOMIC) reads
                 select el.typrelid
                   from unnest(array_append(coalesce(p.proallargtypes, p.proargtypes::oid[]), p.prorettype)) u(t)
                   join pg_type ty on ty.oid = u.t
                   join pg_type el
                     on el.oid = case when ty.typelem <> 0 and ty.typlen = -1 then ty.typelem else ty.oid end
                  where el.typrelid <> 0
                 union
                 select dd.refobjid from pg_depend dd
                  where dd.classid = 'pg_proc'::regclass and dd.objid = p.oid
                    and dd.refclassid = 'pg_class'::regclass)) as relations
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
  left join pg_aggregate a on a.aggfnoid = p.oid
  left join pg_description d on d.objoid = p.oid and d.classoid = 'pg_proc'::regclass and d.objsubid = 0
 where n.nspname = any($1::text[]) and n.nspname not in ('auth', 'storage')
   and not exists (select 1 from pg_depend e where e.classid = 'pg_proc'::regclass and e.objid = p.oid
                     and e.deptype = 'e')
 order by p.oid
"""

_TRIGGERS = """
select t.tgrelid, t.tgname as name, n.nspname as schema, c.relname as table, pg_get_triggerdef(t.oid) as definition,
       t.tgtype, t.tgenabled::text as enabled, fn.nspname || '.' || f.proname as function
  from pg_trigger t
  join pg_class c on c.oid = t.tgrelid
  join pg_namespace n on n.oid = c.relnamespace
  join pg_proc f on f.oid = t.tgfoid
  join pg_namespace fn on fn.oid = f.pronamespace
 where not t.tgisinternal and {not_cloned}
   and (t.tgrelid = any($1::oid[]) or (fn.nspname = any($2::text[]) and n.nspname <> all($2::text[])))
   and not exists (select 1 from pg_depend e where e.classid = 'pg_trigger'::regclass and e.objid = t.oid
                     and e.deptype = 'e')
 order by n.nspname, c.relname, t.tgname
"""

_EXTENSIONS = """
select e.extname as name, en.nspname as schema, e.extversion as version
  from pg_extension e
  join pg_namespace en on en.oid = e.extnamespace
 where e.extname <> 'plpgsql'
   and (en.nspname = any($2::text[])
        or exists (  -- from the extension's few members, through pg_depend's reference index, to our objects
          select 1
            from pg_depend x
            join pg_depend d on d.refclassid = x.classid and d.refobjid = x.objid and d.deptype in ('n', 'a')
           where x.refclassid = 'pg_extension'::regclass and x.refobjid = e.oid and x.deptype = 'e'
             and ((d.classid = 'pg_class'::regclass
                   and (d.objid = any($1::oid[])
                        or d.objid in (select indexrelid from pg_index where indrelid = any($1::oid[]))))
               or (d.classid = 'pg_attrdef'::regclass
                   and d.objid in (select oid from pg_attrdef where adrelid = any($1::oid[])))
               or (d.classid = 'pg_rewrite'::regclass
                   and d.objid in (select oid from pg_rewrite where ev_class = any($1::oid[])))
               or (d.classid = 'pg_constraint'::regclass
                   and d.objid in (select oid from pg_constraint where conrelid = any($1::oid[])))
               or (d.classid = 'pg_policy'::regclass
                   and d.objid in (select oid from pg_policy where polrelid = any($1::oid[])))
               or (d.classid = 'pg_proc'::regclass and d.objid in (select p.oid from pg_proc p
                     join pg_namespace pn on pn.oid = p.pronamespace where pn.nspname = any($2::text[])))
               or (d.classid = 'pg_type'::regclass and d.objid in (select t.oid from pg_type t
                     join pg_namespace tn on tn.oid = t.typnamespace where tn.nspname = any($2::text[]))))))
 order by e.extname
"""

_REPLICA_IDENTITY = {"d": "default", "f": "full", "n": "nothing", "i": "index"}

_RELKINDS: dict[str, m.TableKind] = {
    "r": "table",
    "p": "partitioned_table",
    "v": "view",
    "m": "materialized_view",
    "f": "foreign_table",
}
_TYPTYPES: dict[str, m.TypeKind] = {
    "b": "base",
    "e": "enum",
    "d": "domain",
    "c": "composite",
    "r": "range",
    "m": "multirange",
    "p": "pseudo",
}
_FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
_FK_MATCH = {"s": "SIMPLE", "f": "FULL", "p": "PARTIAL"}
_POLICY_COMMANDS: dict[str, m.PolicyCommand] = {
    "*": "ALL",
    "r": "SELECT",
    "a": "INSERT",
    "w": "UPDATE",
    "d": "DELETE",
}
_TYPE_LIMITS = {"smallint": 2**15 - 1, "integer": 2**31 - 1, "bigint": 2**63 - 1}


class ReflectError(WorkbenchUserError, ValueError):
    """The request cannot be answered (unknown schema or table); the message says what exists."""


def _check_expression(definition: str) -> str:
    """``CHECK ((a > 0)) NOT VALID`` -> ``(a > 0)``: the condition as PostgreSQL printed it."""
    text = definition.strip()
    for suffix in (" NOT VALID", " NO INHERIT"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    if text.startswith("CHECK (") and text.endswith(")"):
        return text[len("CHECK (") : -1]
    return text


def _seq_bound(value: int, data_type: str, increment: int, is_min: bool) -> int | None:
    """None when ``value`` is PostgreSQL's default bound for the type and direction."""
    top = _TYPE_LIMITS.get(data_type, 2**63 - 1)
    ascending = (1, top)
    descending = (-top - 1, -1)
    default = (ascending if increment > 0 else descending)[0 if is_min else 1]
    return None if value == default else value


def _parse_table_filter(tables: Sequence[str] | None, schemas: Sequence[str]) -> set[tuple[str | None, str]] | None:
    if not tables:
        return None
    wanted: set[tuple[str | None, str]] = set()
    for item in tables:
        schema, dot, name = item.partition(".")
        if dot and schema in schemas:
            wanted.add((schema, name))
        else:
            wanted.add((None, item))
    return wanted


async def reflect(
    conn: asyncpg.Connection,
    schemas: Sequence[str] = (m.DEFAULT_SCHEMA,),
    tables: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> m.Database:
    """Reflect ``schemas`` (optionally only ``tables``, given as ``name`` or ``schema.name``).

    Tables outside the selection that foreign keys point to (``auth.users``, typically) are reflected
    too and kept apart in ``Database.external_tables``; the code generator decides what to do with them.
    """
    schemas = list(dict.fromkeys(schemas))
    if not schemas:
        raise ReflectError("No schema given. Pass at least one, e.g. schemas=['public'].")
    bad = [s for s in schemas if s in SYSTEM_SCHEMAS]
    if bad:
        raise ReflectError(f"{', '.join(bad)} is a system schema; choose application schemas such as 'public'.")
    step = 0

    def done(what: str) -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(what, step, _STEPS)

    version = conn.get_server_version()
    nnd_constraint = "coalesce(ix.indnullsnotdistinct, false)" if version.major >= 15 else "false"
    nnd_index = "i.indnullsnotdistinct" if version.major >= 15 else "false"
    async with conn.transaction(readonly=True):
        await conn.execute(_SESSION)
        found = await conn.fetch(
            "select nspname, obj_description(oid, 'pg_namespace') as comment "
            "from pg_namespace where nspname = any($1::text[])",
            schemas,
        )
        comments = {r["nspname"]: r["comment"] for r in found}
        missing = [s for s in schemas if s not in comments]
        if missing:
            names = await conn.fetch(
                "select nspname from pg_namespace where nspname !~ '^pg_' and nspname <> 'information_schema' "
                "order by 1"
            )
            raise ReflectError(
                f"No schema named {', '.join(map(repr, missing))} in this database. "
                f"Schemas here: {', '.join(r['nspname'] for r in names)}."
            )
        wanted = _parse_table_filter(tables, schemas)
        if wanted is None:
            rel_rows = list(await conn.fetch(_RELATIONS.format(where="n.nspname = any($1::text[])"), schemas))
        else:  # only the named relations: reflecting one table of a large schema stays fast
            where = "n.nspname = any($1::text[]) and c.relname = any($2::text[])"
            rel_rows = list(await conn.fetch(_RELATIONS.format(where=where), schemas, sorted({n for _, n in wanted})))
        if wanted is not None:
            rel_rows = [r for r in rel_rows if (r["schema"], r["name"]) in wanted or (None, r["name"]) in wanted]
            got = {(r["schema"], r["name"]) for r in rel_rows} | {(None, r["name"]) for r in rel_rows}
            unknown = [f"{s}.{n}" if s else n for s, n in sorted(wanted, key=str) if (s, n) not in got]
            if unknown:
                raise ReflectError(
                    f"No table or view {', '.join(unknown)} in schema(s) {', '.join(schemas)}. "
                    "Check the spelling, or pass the schema that holds it."
                )
        done("relations")
        selected = [r["oid"] for r in rel_rows]
        con_rows = list(await conn.fetch(_CONSTRAINTS.format(nulls_not_distinct=nnd_constraint), selected))
        done("constraints")
        # FK targets outside the selection, followed transitively so included tables are complete.
        known = set(selected)
        external_rows: list[Any] = []
        frontier = {r["confrelid"] for r in con_rows if r["contype"] == "f"} - known
        while frontier:
            rows = await conn.fetch(_RELATIONS.format(where="c.oid = any($1::oid[])"), list(frontier))
            external_rows.extend(rows)
            known |= frontier
            more = await conn.fetch(_CONSTRAINTS.format(nulls_not_distinct=nnd_constraint), list(frontier))
            con_rows.extend(more)
            frontier = {r["confrelid"] for r in more if r["contype"] == "f"} - known
        all_oids = selected + [r["oid"] for r in external_rows]
        col_rows = await conn.fetch(_COLUMNS, all_oids)
        done("columns")
        idx_rows = await conn.fetch(_INDEXES.format(nulls_not_distinct=nnd_index), all_oids)
        done("indexes")
        pol_rows = await conn.fetch(_POLICIES, all_oids)
        done("policies")
        seq_rows = await conn.fetch(_SEQUENCES.format(not_extension=_NOT_EXTENSION_MEMBER), schemas, all_oids)
        done("sequences")
        used_types = sorted(
            {r["type_oid"] for r in col_rows if r["typtype"] in ("e", "d")}
            | {r["base_type_oid"] for r in col_rows if r["base_type_oid"] is not None}  # enums under domains
        )
        type_rows = await conn.fetch(_TYPES, schemas, used_types)
        done("types")
        view_oids = [r["oid"] for r in rel_rows if r["relkind"] in ("v", "m")]
        dep_rows = await conn.fetch(_VIEW_DEPENDENCIES, view_oids) if view_oids else []
        done("view dependencies")
        fn_rows = await conn.fetch(_FUNCTIONS, schemas)
        done("functions")
        not_cloned = "t.tgparentid = 0" if version.major >= 13 else "true"  # partitions' clones come back by attaching
        trg_rows = await conn.fetch(_TRIGGERS.format(not_cloned=not_cloned), all_oids, schemas)
        done("triggers")
        ext_rows = await conn.fetch(_EXTENSIONS, selected, schemas)
        done("extensions")

    db = _assemble(
        schemas,
        comments,
        rel_rows,
        external_rows,
        con_rows,
        col_rows,
        idx_rows,
        pol_rows,
        seq_rows,
        type_rows,
        dep_rows,
        wanted is not None,
        f"{version.major}.{version.minor}",
    )
    _add_routines(db, fn_rows, trg_rows, ext_rows)
    return db


def _add_routines(db: m.Database, fn_rows: Sequence[Any], trg_rows: Sequence[Any], ext_rows: Sequence[Any]) -> None:
    """Functions, triggers and extensions: what the generated module creates besides tables."""
    by_schema = {s.name: s for s in db.schemas}
    for row in fn_rows:  # also with a table filter: the chosen tables' policies and triggers call them
        by_schema[row["schema"]].functions.append(_function(row))
    tables = {t.key: t for t in db.all_tables()}
    selected = {t.key for t in db.tables()}
    for row in trg_rows:
        trigger = _trigger(row)
        table = tables.get((row["schema"], row["table"]))
        if row["schema"] in by_schema and table is not None:
            table.triggers.append(trigger)
        elif row["schema"] not in by_schema:
            home = by_schema.get(trigger.function.split(".", 1)[0])
            if home is not None and (table is None or table.key not in selected):
                home.external_triggers.append(trigger)
    db.extensions = [m.Extension(name=r["name"], schema=r["schema"], version=r["version"]) for r in ext_rows]


def _function(row: Any) -> m.Function:
    kinds = {"f": "function", "p": "procedure", "a": "aggregate", "w": "window"}
    definition = row["definition"] or ""
    if row["kind"] == "a":
        parts = [f"SFUNC = {row['sfunc']}", f"STYPE = {row['stype']}"]
        if row["finalfunc"]:
            parts.append(f"FINALFUNC = {row['finalfunc']}")
        if row["combinefunc"]:
            parts.append(f"COMBINEFUNC = {row['combinefunc']}")
        if row["initcond"] is not None:
            parts.append("INITCOND = '" + row["initcond"].replace("'", "''") + "'")
        definition = (
            f"CREATE OR REPLACE AGGREGATE {_quote(row['schema'])}.{_quote(row['name'])}({row['args']}) "
            f"({', '.join(parts)})"
        )
    return m.Function(
        schema=row["schema"],
        name=row["name"],
        arguments=row["args"],
        kind=kinds.get(row["kind"], "function"),
        definition=definition.strip(),
        needs_tables=row["relations"] != "[]",
        relations=[(r[0], r[1]) for r in json.loads(row["relations"])],
        comment=row["comment"],
        grants=dict(sorted(json.loads(row["grants"]).items())) if row["grants"] else {},
    )


_TRIGGER_EVENTS = ((4, "INSERT"), (8, "DELETE"), (16, "UPDATE"), (32, "TRUNCATE"))


def _trigger(row: Any) -> m.Trigger:
    tgtype, definition = row["tgtype"], row["definition"]
    timing = "INSTEAD OF" if tgtype & 64 else "BEFORE" if tgtype & 2 else "AFTER"
    condition = None
    start = definition.find(" WHEN (")
    end = definition.rfind(") EXECUTE ")
    if start >= 0 and end > start:
        condition = definition[start + len(" WHEN (") : end]
    return m.Trigger(
        name=row["name"],
        schema=row["schema"],
        table=row["table"],
        definition=definition,
        timing=timing,
        events=[name for bit, name in _TRIGGER_EVENTS if tgtype & bit],
        function=row["function"],
        condition=condition,
        for_each_row=bool(tgtype & 1),
        enabled=row["enabled"],
    )


def _assemble(
    schemas: list[str],
    comments: dict[str, str | None],
    rel_rows: list[Any],
    external_rows: list[Any],
    con_rows: list[Any],
    col_rows: Sequence[Any],
    idx_rows: Sequence[Any],
    pol_rows: Sequence[Any],
    seq_rows: Sequence[Any],
    type_rows: Sequence[Any],
    dep_rows: Sequence[Any],
    filtered: bool,
    version: str,
) -> m.Database:
    tables: dict[int, m.Table] = {}
    for row in [*rel_rows, *external_rows]:
        tables[row["oid"]] = _table(row)
    for row in col_rows:
        tables[row["attrelid"]].columns.append(_column(row))
    names = {(row["attrelid"], row["attnum"]): row["name"] for row in col_rows}  # FK targets are reflected too
    for row in con_rows:
        table = tables.get(row["conrelid"])
        if table is not None:
            columns = [names[(row["conrelid"], n)] for n in row["conkey"] or () if n > 0]
            ref_columns = [names[(row["confrelid"], n)] for n in row["confkey"] or ()]
            _add_constraint(table, row, columns, ref_columns)
    for row in idx_rows:
        tables[row["indrelid"]].indexes.append(_index(row))
    for row in pol_rows:
        owner = tables[row["polrelid"]]
        owner.policies.append(
            m.Policy(
                name=row["polname"],
                command=_POLICY_COMMANDS[row["cmd"]],
                roles=sorted(row["roles"]),
                permissive=row["polpermissive"],
                using=row["using_expr"],
                with_check=row["check_expr"],
                schema=owner.schema,
                table=owner.name,
            )
        )
    for row in dep_rows:
        tables[row["view_oid"]].depends_on.append((row["schema"], row["name"]))

    sequences = _sequences(seq_rows, tables)
    if filtered:  # only the sequences the chosen tables own or call
        defaults = " ".join(c.default or "" for oid in (r["oid"] for r in rel_rows) for c in tables[oid].columns)
        chosen = {tables[r["oid"]].key for r in rel_rows}
        sequences = [
            s
            for s in sequences
            if (s.owned_by is not None and (s.owned_by[0], s.owned_by[1]) in chosen)
            or f"'{s.schema}.{s.name}'" in defaults
            or f"'{s.name}'" in defaults
        ]

    db = m.Database(server_version=version)
    by_schema = {name: m.Schema(name=name, comment=comments.get(name)) for name in schemas}
    db.schemas = list(by_schema.values())
    for row in rel_rows:
        by_schema[row["schema"]].tables.append(tables[row["oid"]])
    db.external_tables = [tables[row["oid"]] for row in external_rows]
    for seq in sequences:
        if seq.schema in by_schema:
            by_schema[seq.schema].sequences.append(seq)
    for row in type_rows:
        target: m.Schema | None = by_schema.get(row["schema"])
        if row["typtype"] == "e":
            enum = m.Enum(schema=row["schema"], name=row["name"], labels=list(row["labels"]), comment=row["comment"])
            (target.enums if target else db.external_enums).append(enum)
        else:
            domain = _domain(row)
            (target.domains if target else db.external_domains).append(domain)
    return db


def _table(row: Any) -> m.Table:
    parent = row["parent"]
    grants = {k: list(v) for k, v in json.loads(row["grants"]).items()} if row["grants"] else {}
    kind = _RELKINDS[row["relkind"]]
    return m.Table(
        schema=row["schema"],
        name=row["name"],
        kind=kind,
        comment=row["comment"],
        rls_enabled=row["relrowsecurity"],
        rls_forced=row["relforcerowsecurity"],
        grants=dict(sorted(grants.items())),
        partition_key=row["partition_key"],
        partition_of=(parent[0], parent[1]) if parent else None,
        partition_bound=row["partition_bound"],
        view_definition=row["view_definition"],
        view_options=list(row["reloptions"] or []) if kind in ("view", "materialized_view") else [],
        populated=row["relispopulated"] if kind == "materialized_view" else True,
        unlogged=row["persistence"] == "u",
        replica_identity=_REPLICA_IDENTITY.get(row["replident"], "default"),
        replica_index=row["replica_index"] if row["replident"] == "i" else None,
        clustered_index=row["clustered_index"],
    )


def _column(row: Any) -> m.Column:
    identity = None
    if row["identity"]:
        identity = m.ColumnIdentity(always=row["identity"] == "a")
    generated = row["default_expr"] if row["generated"] == "s" else None
    default = None if generated is not None else row["default_expr"]
    dims = max(row["attndims"], 1) if row["is_array"] else 0
    return m.Column(
        name=row["name"],
        type=_type_ref(row["type_sql"], row["type_name"], row["type_schema"], row["typtype"], dims, row["category"]),
        nullable=not row["attnotnull"],
        default=default,
        identity=identity,
        generated=generated,
        comment=row["comment"],
        collation=row["collation"],
    )


@functools.lru_cache(maxsize=4096)
def _type_ref(sql: str, name: str, schema: str, typtype: str, dims: int, category: str = "") -> m.TypeRef:
    """TypeRefs are immutable: the few distinct ones are shared by every column."""
    kind = _TYPTYPES.get(typtype, "base")
    return m.TypeRef(sql=sql, name=name, schema=schema, kind=kind, dims=dims, category=category or "")


def _add_constraint(table: m.Table, row: Any, columns: list[str], ref_columns: list[str]) -> None:
    kind, name = row["contype"], row["conname"]
    definition, inherited = row["definition"], row["inherited"]
    if kind == "p":
        table.primary_key = m.PrimaryKey(name=name, columns=columns, inherited=inherited)
    elif kind == "f":
        table.foreign_keys.append(
            m.ForeignKey(
                name=name,
                columns=columns,
                ref_schema=row["ref_schema"],
                ref_table=row["ref_table"],
                ref_columns=ref_columns,
                on_update=_FK_ACTIONS[row["on_update"]],
                on_delete=_FK_ACTIONS[row["on_delete"]],
                match=_FK_MATCH.get(row["match"], "SIMPLE"),
                deferrable=row["condeferrable"],
                initially_deferred=row["condeferred"],
                definition=definition,
                inherited=inherited,
            )
        )
    elif kind == "u":
        table.unique_constraints.append(
            m.UniqueConstraint(
                name=name,
                columns=columns,
                nulls_not_distinct=row["nulls_not_distinct"],
                deferrable=row["condeferrable"],
                initially_deferred=row["condeferred"],
                definition=definition,
                inherited=inherited,
            )
        )
    elif kind == "c":
        table.check_constraints.append(
            m.CheckConstraint(
                name=name,
                expression=_check_expression(definition),
                definition=definition,
                inherited=inherited,
                columns=columns,
            )
        )
    else:
        table.other_constraints.append(
            m.OtherConstraint(name=name, kind="exclude", definition=definition, inherited=inherited, columns=columns)
        )


def _index(row: Any) -> m.Index:
    keys, options, opclasses, col_defs = row["keys"], row["options"], row["opclasses"], row["col_defs"]
    nkey = row["indnkeyatts"]
    columns = []
    for pos in range(nkey):
        option = options[pos] if pos < len(options) else 0
        descending = bool(option & 1)
        nulls_first_bit = bool(option & 2)
        nulls_first = None if nulls_first_bit == descending else nulls_first_bit
        columns.append(
            m.IndexColumn(
                expression=col_defs[pos],
                is_expression=keys[pos] == 0,
                opclass=opclasses[pos] if pos < len(opclasses) else None,
                descending=descending,
                nulls_first=nulls_first,
            )
        )
    opts = {}
    for item in row["reloptions"] or []:
        key, _, value = item.partition("=")
        opts[key] = value
    return m.Index(
        name=row["name"],
        columns=columns,
        unique=row["indisunique"],
        method=row["amname"],
        where=row["predicate"],
        include=list(col_defs[nkey:]),
        nulls_not_distinct=bool(row["nulls_not_distinct"]),
        options=opts,
        definition=row["definition"],
        inherited=row["inherited"],
    )


def _sequences(rows: Sequence[Any], tables: dict[int, m.Table]) -> list[m.Sequence]:
    out: dict[tuple[str, str], m.Sequence] = {}
    for row in rows:
        key = (row["schema"], row["name"])
        if row["deptype"] == "i":  # an identity column's own sequence: its options belong to the column
            table = tables.get(row["refobjid"])
            if table is not None:
                for col in table.columns:
                    if col.name == row["owner_column"] and col.identity is not None:
                        col.identity = m.ColumnIdentity(
                            always=col.identity.always,
                            start=row["seqstart"],
                            increment=row["seqincrement"],
                            minvalue=_seq_bound(row["seqmin"], col.type.sql, row["seqincrement"], True),
                            maxvalue=_seq_bound(row["seqmax"], col.type.sql, row["seqincrement"], False),
                            cache=row["seqcache"],
                            cycle=row["seqcycle"],
                        )
            out.pop(key, None)
            continue
        owned = None
        if row["deptype"] == "a" and row["owner_column"] is not None:
            owned = (row["owner_schema"], row["owner_table"], row["owner_column"])
        data_type = row["data_type"]
        out[key] = m.Sequence(
            schema=row["schema"],
            name=row["name"],
            data_type=data_type,
            start=row["seqstart"],
            increment=row["seqincrement"],
            minvalue=_seq_bound(row["seqmin"], data_type, row["seqincrement"], True),
            maxvalue=_seq_bound(row["seqmax"], data_type, row["seqincrement"], False),
            cache=row["seqcache"],
            cycle=row["seqcycle"],
            owned_by=owned,
        )
    return list(out.values())


def _domain(row: Any) -> m.Domain:
    base = m.TypeRef(
        sql=row["base_sql"],
        name=row["base_name"],
        schema=row["base_schema"],
        kind=_TYPTYPES.get(row["base_typtype"], "base"),
        dims=max(row["typndims"], 1) if row["base_is_array"] else 0,
    )
    return m.Domain(
        schema=row["schema"],
        name=row["name"],
        base=base,
        nullable=not row["typnotnull"],
        default=row["typdefault"],
        collation=row["collation"],
        checks=[m.DomainCheck(name=n, expression=_check_expression(d)) for n, d in row["checks"]],
        comment=row["comment"],
    )


async def reflect_dsn(
    dsn: str,
    schemas: Sequence[str] = (m.DEFAULT_SCHEMA,),
    tables: Sequence[str] | None = None,
    progress: Progress | None = None,
    *,
    pooled: bool = False,
) -> m.Database:
    """Connect to ``dsn`` (a libpq URL), reflect, close. ``pooled=True`` behind a transaction pooler."""
    import asyncpg

    kwargs: dict[str, Any] = {"statement_cache_size": 0} if pooled else {}
    conn = await asyncpg.connect(plain_dsn(dsn), **kwargs)
    try:
        return await reflect(conn, schemas, tables, progress)
    finally:
        await conn.close()


def plain_dsn(dsn: str) -> str:
    """asyncpg wants ``postgresql://``; accept SQLAlchemy's ``postgresql+asyncpg://`` too."""
    scheme, sep, rest = dsn.partition("://")
    if sep and "+" in scheme:
        return f"{scheme.split('+', 1)[0]}://{rest}"
    return dsn


def dsn_from_settings(settings: Any) -> tuple[str, bool]:
    """The libpq DSN of a :class:`~workbench.core.settings.Settings` and whether a transaction pooler is in between."""
    url = settings.database_url("asyncpg")
    dsn = plain_dsn(url.render_as_string(hide_password=False))
    return dsn, settings.mode.value == "transaction"


async def reflect_settings(
    settings: Any,
    schemas: Sequence[str] = (m.DEFAULT_SCHEMA,),
    tables: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> m.Database:
    """Reflect the database a :class:`~workbench.core.settings.Settings` points at."""
    dsn, pooled = dsn_from_settings(settings)
    return await reflect_dsn(dsn, schemas, tables, progress, pooled=pooled)


async def list_schemas_dsn(dsn: str, *, pooled: bool = False) -> list[str]:
    """The application schemas of a database: system schemas and those of extensions left out."""
    import asyncpg

    kwargs: dict[str, Any] = {"statement_cache_size": 0} if pooled else {}
    conn = await asyncpg.connect(plain_dsn(dsn), **kwargs)
    try:
        rows = await conn.fetch(
            """select n.nspname from pg_namespace n
                where n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
                  and not exists (select 1 from pg_depend e where e.classid = 'pg_namespace'::regclass
                                    and e.objid = n.oid and e.deptype = 'e')
                order by 1"""
        )
        return [r["nspname"] for r in rows]
    finally:
        await conn.close()
