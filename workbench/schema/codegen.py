"""SQLAlchemy 2.0 typed declarative source code from a :class:`~workbench.schema.model.Database`.

The aim is fidelity: ``Base.metadata.create_all()`` of the generated code rebuilds the same database
(columns in order, types, defaults, keys, constraints, indexes, enums, domains, sequences), with views
created as views, partitioned tables as partitioned tables, and row level security with its policies,
on an empty database that has only what a new Supabase project has: the extensions the models need, the
schemas' functions and triggers, replica identity, ``CLUSTER ON`` and comments come from the module too.
What SQLAlchemy has no construct for is emitted as DDL (:mod:`workbench.schema.ddl`) that ``create_all``
runs before or after the tables; names live in :mod:`~workbench.schema.naming`, Python-source helpers in
:mod:`~workbench.schema.pysource`.

The steps follow one verb scheme: :func:`generate` -> ``_plan`` (forms and names) -> ``_relate``
(relationships) -> ``_render_*`` (one module or one module per schema).
"""

from __future__ import annotations

import functools
import keyword
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from workbench.schema import model as m
from workbench.schema.ddl import extension_sql, render_ddl
from workbench.schema.naming import ORM as _ORM
from workbench.schema.naming import PG as _PG
from workbench.schema.naming import SA as _SA
from workbench.schema.naming import attribute_name as _attribute
from workbench.schema.naming import free_name as _free
from workbench.schema.naming import pascal, quote_ident, singular, snake
from workbench.schema.naming import split_qualified as _split_qualified
from workbench.schema.naming import strip_id as _strip_id
from workbench.schema.naming import unquote as _unquote
from workbench.schema.pysource import Imports as _Imports
from workbench.schema.pysource import py_literal as _py
from workbench.schema.pysource import sql_text as _sql_text
from workbench.schema.pysource import wrap as _wrap

__all__ = ["CodegenError", "GeneratedCode", "check_options", "generate", "pascal", "quote_ident", "singular", "snake"]

VALID_OPTIONS = frozenset(
    {
        "noindexes",  # leave indexes out
        "noconstraints",  # leave unique and check constraints out (keys stay)
        "nocomments",  # leave table and column comments out
        "nojoined",  # no many-to-many through association tables: map them like other tables
        "nobidi",  # relationships on the foreign-key side only (no back_populates)
        "noidsuffix",  # name many-to-one relationships after the target table, not the FK column
        "nonativeenums",  # enum columns typed str, no Python enum classes (the database type is kept)
        "noinflect",  # class names are the table names as they are (no singular form)
        "norelationships",  # no relationships at all
        "noviews",  # leave views and materialized views out
        "norls",  # do not recreate row level security and policies
        "nofunctions",  # leave the schemas' functions and triggers out (policies then need them to exist)
    }
)
EXTERNAL_MODES = ("standin", "include", "plain")
LAYOUTS = ("file", "package")
External = Literal["standin", "include", "plain"]
Layout = Literal["file", "package"]

# typname -> (SQLAlchemy class, module, Python type)
_SIMPLE_TYPES: dict[str, tuple[str, str, str]] = {
    "int2": ("SmallInteger", _SA, "int"),
    "int4": ("Integer", _SA, "int"),
    "int8": ("BigInteger", _SA, "int"),
    "float4": ("REAL", _SA, "float"),
    "float8": ("Double", _SA, "float"),
    "bool": ("Boolean", _SA, "bool"),
    "text": ("Text", _SA, "str"),
    "date": ("Date", _SA, "datetime.date"),
    "uuid": ("Uuid", _SA, "uuid.UUID"),
    "json": ("JSON", _PG, "Any"),
    "jsonb": ("JSONB", _PG, "Any"),
    "bytea": ("LargeBinary", _SA, "bytes"),
    "inet": ("INET", _PG, "str"),
    "cidr": ("CIDR", _PG, "str"),
    "macaddr": ("MACADDR", _PG, "str"),
    "macaddr8": ("MACADDR8", _PG, "str"),
    "tsvector": ("TSVECTOR", _PG, "str"),
    "tsquery": ("TSQUERY", _PG, "str"),
    "oid": ("OID", _PG, "int"),
    "regclass": ("REGCLASS", _PG, "Any"),
    "regconfig": ("REGCONFIG", _PG, "Any"),
    "money": ("MONEY", _PG, "str"),
    "hstore": ("HSTORE", _PG, "dict[str, str | None]"),
    "int4range": ("INT4RANGE", _PG, "Range[int]"),
    "int8range": ("INT8RANGE", _PG, "Range[int]"),
    "numrange": ("NUMRANGE", _PG, "Range[Decimal]"),
    "daterange": ("DATERANGE", _PG, "Range[datetime.date]"),
    "tsrange": ("TSRANGE", _PG, "Range[datetime.datetime]"),
    "tstzrange": ("TSTZRANGE", _PG, "Range[datetime.datetime]"),
    "int4multirange": ("INT4MULTIRANGE", _PG, "list[Range[int]]"),
    "int8multirange": ("INT8MULTIRANGE", _PG, "list[Range[int]]"),
    "nummultirange": ("NUMMULTIRANGE", _PG, "list[Range[Decimal]]"),
    "datemultirange": ("DATEMULTIRANGE", _PG, "list[Range[datetime.date]]"),
    "tsmultirange": ("TSMULTIRANGE", _PG, "list[Range[datetime.datetime]]"),
    "tstzmultirange": ("TSTZMULTIRANGE", _PG, "list[Range[datetime.datetime]]"),
}
_SQL_NAME_OF = {  # what format_type prints for the simple types above, to be sure no modifier is lost
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "money": "money",
}


class CodegenError(ValueError):
    """Options or input the generator cannot honour; the message says what to change."""


@dataclass
class GeneratedCode:
    """The generated source: one file (``models.py``) or a package (``__init__.py`` + one module per schema)."""

    files: dict[str, str]
    layout: Layout = "file"
    notes: list[str] = field(default_factory=list)  # what could not be expressed, for the user to read

    @property
    def text(self) -> str:
        """The single module, or all modules one after the other with their file names."""
        if self.layout == "file":
            return next(iter(self.files.values()))
        return "\n".join(f"# ---- {name} ----\n{body}" for name, body in self.files.items())

    def write(self, path: Path | str) -> list[Path]:
        """Write to ``path``: a ``.py`` file for the file layout, a package folder for the package layout."""
        target = Path(path).expanduser().resolve()
        if self.layout == "file":
            if target.is_dir():
                target = target / "models.py"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.text, encoding="utf-8")
            return [target]
        if target.suffix == ".py":
            raise CodegenError(f"{target} is a .py file but the package layout writes a folder; pass a folder.")
        target.mkdir(parents=True, exist_ok=True)
        written = []
        for name, body in self.files.items():
            (target / name).write_text(body, encoding="utf-8")
            written.append(target / name)
        return written


# -- plan ----------------------------------------------------------------------------------------------


@dataclass
class _Rel:
    name: str
    target: _Entity
    many: bool
    optional: bool
    back: str | None = None
    foreign_keys: list[str] | None = None  # forward: attributes of this class
    foreign_keys_expr: str | None = None  # back side: "[Source.attr]"
    remote_side: list[str] | None = None
    secondary: str | None = None


@dataclass
class _Entity:
    table: m.Table
    form: Literal["class", "table", "view", "stub"]
    module: str
    name: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    columns: list[m.Column] = field(default_factory=list)
    rels: list[_Rel] = field(default_factory=list)
    stub_pk: list[str] = field(default_factory=list)
    key: tuple[str, str] = ("", "")

    def __post_init__(self) -> None:
        self.key = (self.table.schema, self.table.name)


class _Generator:
    def __init__(self, db: m.Database, options: frozenset[str], external: External, layout: Layout) -> None:
        self.db, self.options, self.external, self.layout = db, options, external, layout
        self.entities: dict[tuple[str, str], _Entity] = {}
        self.enum_names: dict[tuple[str, str], str] = {}
        self._type_cache: dict[tuple[object, ...], tuple[str, str, _Imports]] = {}
        self.enum_type_names: dict[tuple[str, str], str] = {}
        self.domain_names: dict[tuple[str, str], str] = {}
        self.seq_names: dict[tuple[str, str], str] = {}
        self.serial_columns: set[tuple[str, str, str]] = set()  # rendered as SERIAL: no Sequence object
        self.module_names: set[str] = set()
        self.notes: list[str] = []
        self.selected = {t.key for t in db.tables()}

    # -- plan -------------------------------------------------------------------------------------------
    def module_of(self, schema: str) -> str:
        return "models" if self.layout == "file" else snake(schema)

    def plan(self) -> None:
        tables = [t for t in self.db.tables() if not (t.is_view and "noviews" in self.options)]
        tables = [t for t in tables if t.kind != "foreign_table"]
        if self.external == "include":
            tables += [t for t in self.db.external_tables if t.kind != "foreign_table"]
        referenced = self._external_references()
        associations = self._associations(tables)
        for table in tables:
            if table.is_view:
                form: Literal["class", "table", "view", "stub"] = "view"
            elif table.partition_of is not None or table.key in associations or table.primary_key is None:
                form = "table"
            else:
                form = "class"
            self.entities[table.key] = _Entity(table, form, self.module_of(table.schema), columns=list(table.columns))
        if self.external == "standin":
            for key, cols in referenced.items():
                found = self.db.find_table(key)
                if found is None or key in self.entities:
                    continue
                wanted = [c for c in found.columns if c.name in cols]
                self.entities[key] = _Entity(
                    found, "stub", self.module_of(found.schema), columns=wanted, stub_pk=[c.name for c in wanted]
                )
        self._find_serials()
        self.cyclic = _cyclic_tables([e.table for e in self.entities.values() if e.form != "view"])
        self._name_module_objects()
        for ent in self.entities.values():
            used: set[str] = set()
            for col in ent.columns:
                ent.attrs[col.name] = (
                    _free(_attribute(col.name), used, self.module_names) if ent.form in ("class", "stub") else col.name
                )
                used.add(ent.attrs[col.name])
        if "norelationships" not in self.options:
            self._relate(associations)

    def _external_references(self) -> dict[tuple[str, str], list[str]]:
        refs: dict[tuple[str, str], list[str]] = {}
        for table in self.db.tables():
            for fk in table.foreign_keys:
                key = (fk.ref_schema, fk.ref_table)
                if key not in self.selected:
                    refs.setdefault(key, [])
                    refs[key] += [c for c in fk.ref_columns if c not in refs[key]]
        return refs

    def _associations(self, tables: list[m.Table]) -> set[tuple[str, str]]:
        if "nojoined" in self.options or "norelationships" in self.options:
            return set()
        keys = {t.key for t in tables}
        out = set()
        for t in tables:
            fks = [fk for fk in t.foreign_keys if not fk.inherited]
            if t.is_view or t.partition_of or t.partition_key or len(fks) != 2:
                continue
            covered = {c for fk in fks for c in fk.columns}
            targets = [(fk.ref_schema, fk.ref_table) for fk in fks]
            if covered != {c.name for c in t.columns} or targets[0] == targets[1]:
                continue
            if all(k in keys and self.db.find_table(k) and self.db.find_table(k).primary_key for k in targets):  # type: ignore[union-attr]
                out.add(t.key)
        return out

    def _find_serials(self) -> None:
        """``serial`` columns (owned sequence with the default name) render as SERIAL, as they were created."""
        seqs = {s.key: s for s in self.db.sequences()}
        serial_type = {"integer": "integer", "bigint": "bigint", "smallint": "smallint"}
        for ent in self.entities.values():
            pk = ent.table.primary_key
            if ent.form != "class" or pk is None or len(pk.columns) != 1:
                continue
            col = ent.table.column(pk.columns[0])
            seq_key = _nextval(col.default)
            if seq_key is None:
                continue
            seq = seqs.get((seq_key[0] or ent.table.schema, seq_key[1]))
            expected = f"{ent.table.name}_{col.name}_seq"
            if (
                seq is not None
                and seq.name == expected
                and len(expected) <= 63
                and seq.owned_by == (ent.table.schema, ent.table.name, col.name)
                and seq.schema == ent.table.schema
                and serial_type.get(col.type.sql) == seq.data_type
                and (seq.start, seq.increment, seq.minvalue, seq.maxvalue, seq.cache, seq.cycle)
                == (1, 1, None, None, 1, False)
                and not any(len(fk.columns) == 1 and fk.columns[0] == col.name for fk in ent.table.foreign_keys)
            ):
                self.serial_columns.add((ent.table.schema, ent.table.name, col.name))

    def _prefix(self, schema: str) -> str:
        return "" if schema == m.DEFAULT_SCHEMA else schema + "_"

    def _name_module_objects(self) -> None:
        used = self.module_names
        singularize = "noinflect" not in self.options
        for ent in sorted(self.entities.values(), key=lambda e: (e.table.schema != m.DEFAULT_SCHEMA, e.key)):
            if ent.form in ("class", "stub"):
                base = pascal(self._prefix(ent.table.schema) + ent.table.name, singularize=singularize)
                if base in used and singularize:
                    base = pascal(self._prefix(ent.table.schema) + ent.table.name)
                ent.name = _free(base, used)
            else:
                ent.name = _free("t_" + snake(self._prefix(ent.table.schema) + ent.table.name), used)
        if "nonativeenums" not in self.options:
            for enum in self.db.enums():
                self.enum_names[enum.key] = _free(pascal(self._prefix(enum.schema) + enum.name), used)
                self.enum_type_names[enum.key] = _free(snake(self._prefix(enum.schema) + enum.name) + "_type", used)
        for domain in self.db.domains():
            self.domain_names[domain.key] = _free(snake(self._prefix(domain.schema) + domain.name) + "_domain", used)
        for seq in self.db.sequences():
            if seq.owned_by and seq.owned_by in self.serial_columns:
                continue
            self.seq_names[seq.key] = _free(snake(self._prefix(seq.schema) + seq.name), used)

    # -- relationships ----------------------------------------------------------------------------------
    def _relate(self, associations: set[tuple[str, str]]) -> None:
        classes = {k: e for k, e in self.entities.items() if e.form in ("class", "stub")}
        used = {e.key: set(e.attrs.values()) for e in classes.values()}
        pending_back: list[tuple[_Entity, _Entity, _Rel, str, bool, int]] = []
        bidi = "nobidi" not in self.options
        for ent in sorted(classes.values(), key=lambda e: e.key):
            if ent.form != "class":
                continue
            fks = [fk for fk in ent.table.foreign_keys if not fk.inherited]
            for fk in fks:
                target = classes.get((fk.ref_schema, fk.ref_table))
                if target is None:
                    continue
                paths = sum(1 for f in fks if (f.ref_schema, f.ref_table) == target.key)
                if target is not ent:
                    paths += sum(
                        1
                        for f in target.table.foreign_keys
                        if (f.ref_schema, f.ref_table) == ent.key and not f.inherited
                    )
                stripped = _strip_id(fk.columns[0]) if len(fk.columns) == 1 else ""
                if "noidsuffix" in self.options or not stripped:
                    base = snake(singular(fk.ref_table))
                else:
                    base = snake(stripped)
                name = _free(base, used[ent.key], self.module_names)
                used[ent.key].add(name)
                optional = any(ent.table.column(c).nullable for c in fk.columns)
                rel = _Rel(name=name, target=target, many=False, optional=optional)
                if paths > 1:
                    rel.foreign_keys = [ent.attrs[c] for c in fk.columns]
                if target is ent:
                    rel.remote_side = [ent.attrs[c] for c in fk.ref_columns]
                ent.rels.append(rel)
                if bidi and target.form == "class":
                    one_to_one = is_unique(ent.table, fk.columns)
                    pending_back.append((ent, target, rel, base, one_to_one, paths))
        for ent, target, rel, base, one_to_one, paths in pending_back:
            if target is ent:
                back = f"{rel.name}_reverse"
            elif paths > 1:
                back = f"{snake(ent.table.name)}_{base}"
            else:
                back = snake(singular(ent.table.name)) if one_to_one else snake(ent.table.name)
            back = _free(back, used[target.key], self.module_names)
            used[target.key].add(back)
            rel.back = back
            back_rel = _Rel(name=back, target=ent, many=not one_to_one, optional=True, back=rel.name)
            if rel.foreign_keys:
                back_rel.foreign_keys_expr = "[" + ", ".join(f"{ent.name}.{a}" for a in rel.foreign_keys) + "]"
            target.rels.append(back_rel)
        for key in sorted(associations):
            assoc = self.entities[key]
            fk1, fk2 = [fk for fk in assoc.table.foreign_keys if not fk.inherited]
            left, right = classes[(fk1.ref_schema, fk1.ref_table)], classes[(fk2.ref_schema, fk2.ref_table)]
            secondary = assoc.table.name if assoc.table.schema == m.DEFAULT_SCHEMA else assoc.table.qualified_name
            name_l = _free(snake(right.table.name), used[left.key], self.module_names)
            used[left.key].add(name_l)
            name_r = _free(snake(left.table.name), used[right.key], self.module_names)
            used[right.key].add(name_r)
            left.rels.append(_Rel(name_l, right, True, False, back=name_r if bidi else None, secondary=secondary))
            if bidi:
                right.rels.append(_Rel(name_r, left, True, False, back=name_l, secondary=secondary))

    # -- types ------------------------------------------------------------------------------------------
    def column_type(self, col: m.Column, imp: _Imports, module: str) -> tuple[str, str]:
        """(SQLAlchemy type expression, Python type) for a column."""
        expr, py = self._element_type(col.type, col.collation, imp, module)
        if col.type.dims:
            imp.add(_PG, "ARRAY")
            dims = f", dimensions={col.type.dims}" if col.type.dims > 1 else ""
            expr, py = f"ARRAY({expr}{dims})", f"list[{py}]"
        return expr, py

    def _element_type(self, ref: m.TypeRef, collation: str | None, imp: _Imports, module: str) -> tuple[str, str]:
        """Memoized per type: the same few types recur on every table."""
        key = (ref.sql, ref.name, ref.schema, ref.kind, collation, module)
        found = self._type_cache.get(key)
        if found is None:
            probe = _Imports()
            expr, py = self._element_type_uncached(ref, collation, probe, module)
            found = self._type_cache[key] = (expr, py, probe)
        imp.merge(found[2])
        return found[0], found[1]

    def _element_type_uncached(
        self, ref: m.TypeRef, collation: str | None, imp: _Imports, module: str
    ) -> tuple[str, str]:
        sql = ref.element_sql
        key = (ref.schema, ref.name)
        if ref.kind == "enum":
            enum = next((e for e in self.db.enums() if e.key == key), None)
            if enum is not None:
                return self._enum_type(enum, imp, module)
        if ref.kind == "domain" and key in self.domain_names:
            domain = next(d for d in self.db.domains() if d.key == key)
            _, py = self._element_type(domain.base, None, imp, module)
            if domain.base.dims:
                py = f"list[{py}]"
            return self._import_object(self.domain_names[key], domain.schema, imp, module), py
        if ref.schema == "pg_catalog":
            found = self._builtin_type(ref.name, sql, collation, imp)
            if found is not None:
                return found
        return self._raw_type(sql, imp, module), "Any"

    def _builtin_type(self, name: str, sql: str, collation: str | None, imp: _Imports) -> tuple[str, str] | None:
        coll = f"collation={_py(collation)}" if collation else ""
        mods = re.findall(r"\d+", sql.split(" with")[0]) if "(" in sql else []
        if name in ("varchar", "text", "bpchar"):
            if name == "bpchar" and not mods:
                return None
            cls = {"varchar": "String", "text": "Text", "bpchar": "CHAR"}[name]
            args = ", ".join(a for a in (mods[0] if mods else "", coll) if a)
            return _call(imp.add(_SA, cls), args), "str"
        if collation:
            return None
        if name == "numeric":
            return _call(imp.add(_SA, "Numeric"), ", ".join(mods)), "Decimal"
        if name in ("timestamp", "timestamptz", "time", "timetz"):
            tz = name.endswith("tz")
            py = (
                "datetime.time" if name.startswith("time") and not name.startswith("timestamp") else "datetime.datetime"
            )
            if mods:
                cls = imp.add(_PG, "TIMESTAMP" if name.startswith("timestamp") else "TIME")
                return f"{cls}({'timezone=True, ' if tz else ''}precision={mods[0]})", py
            cls = imp.add(_SA, "DateTime" if name.startswith("timestamp") else "Time")
            return _call(cls, "timezone=True" if tz else ""), py
        if name == "interval":
            if sql != "interval" and not re.fullmatch(r"interval\(\d+\)", sql):
                return None
            return _call(imp.add(_PG, "INTERVAL"), f"precision={mods[0]}" if mods else ""), "datetime.timedelta"
        if name in ("bit", "varbit"):
            bits = [mods[0]] if mods else []
            if name == "varbit":
                bits.append("varying=True")
            return _call(imp.add(_PG, "BIT"), ", ".join(bits)), "str"
        if name in _SIMPLE_TYPES:
            if name in _SQL_NAME_OF and sql != _SQL_NAME_OF[name]:
                return None
            cls, module, py = _SIMPLE_TYPES[name]
            imp.add(module, cls)
            return cls, py
        return None

    def _annotation_imports(self, annotation: str, imp: _Imports) -> None:
        """Import what a ``Mapped[...]`` annotation names (Core tables need none of it)."""
        for std in _names_in(annotation):
            self._std(std, imp)

    def _std(self, what: str, imp: _Imports) -> str:
        if what in ("datetime", "uuid", "enum"):
            imp.modules.add(what)
        elif what == "Decimal":
            imp.add("decimal", "Decimal")
        elif what == "Any":
            imp.add("typing", "Any")
        elif what == "Range":
            imp.add(_PG, "Range")
        return what

    def _raw_type(self, sql: str, imp: _Imports, module: str) -> str:
        self.needs_raw = True
        if self.layout == "package" and module != "_base":
            imp.add("._base", "PgType")
        return f"PgType({_py(sql)})"

    def _enum_type(self, enum: m.Enum, imp: _Imports, module: str) -> tuple[str, str]:
        schema = f", schema={_py(enum.schema)}" if enum.schema != m.DEFAULT_SCHEMA else ""
        if "nonativeenums" in self.options:
            labels = ", ".join(_py(v) for v in enum.labels)
            return f"{imp.add(_PG, 'ENUM')}({labels}, name={_py(enum.name)}{schema})", "str"
        cls = self._import_object(self.enum_names[enum.key], enum.schema, imp, module)
        imp.add(_SA, "Enum")
        return (
            f"Enum({cls}, name={_py(enum.name)}{schema}, values_callable=lambda cls: [member.value for member in cls])",
            cls,
        )

    def _import_object(self, name: str, schema: str, imp: _Imports, module: str) -> str:
        if self.layout == "package" and self.module_of(schema) != module:
            imp.add("." + self.module_of(schema), name)
        return name

    # -- render -----------------------------------------------------------------------------------------
    needs_raw = False

    def render(self, header: str) -> GeneratedCode:
        modules = sorted({e.module for e in self.entities.values()} | {self.module_of(s.name) for s in self.db.schemas})
        bodies: dict[str, tuple[_Imports, list[str]]] = {}
        for module in modules:
            imp = _Imports()
            chunks = self._render_module(module, imp)
            bodies[module] = (imp, chunks)
        ddl_imp = _Imports()
        ddl = render_ddl(self, ddl_imp)
        if self.layout == "file":
            imp, chunks = bodies["models"]
            imp.merge(ddl_imp)
            base = self._render_base(imp)
            body = [base, *chunks] + ([ddl] if ddl else [])
            text = self._assemble(header, imp, body)
            return GeneratedCode({"models.py": text}, "file", self.notes)
        files: dict[str, str] = {}
        base_imp = _Imports()
        files["_base.py"] = self._assemble(
            '"""The declarative base, the schemas it needs, and shared types."""',
            base_imp,
            [self._render_base(base_imp)],
        )
        for module, (imp, chunks) in bodies.items():
            imp.add("._base", "Base")
            files[f"{module}.py"] = self._assemble(f'"""Models of schema {module}."""', imp, chunks)
        if ddl:
            ddl_imp.add("._base", "Base")
            files["_ddl.py"] = self._assemble(
                '"""Views, partitions, row level security and policies: DDL run by create_all."""', ddl_imp, [ddl]
            )
        submodules = ", ".join(sorted(modules))
        init = [f"from . import {submodules}  # noqa: F401  (importing them registers the models)"]
        if ddl:  # after the models: its listeners run after those that create the models' types
            init.append("from . import _ddl  # noqa: F401, I001")
        init += [
            "from ._base import Base, view_metadata",
            "",
            '__all__ = ["Base", "view_metadata"]',
        ]
        files["__init__.py"] = header + "\n\n" + "\n".join(init) + "\n"
        return GeneratedCode(files, "package", self.notes)

    def _assemble(self, header: str, imp: _Imports, body: list[str]) -> str:
        chunks = [p for p in body if p]
        imports = imp.render()
        text = "\n\n\n".join(chunks)
        if imports:
            code_lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
            starts_def = bool(code_lines) and code_lines[0].startswith(("class ", "def ", "@"))
            text = imports + ("\n\n\n" if starts_def else "\n\n") + text
        return f"{header}\n\n{text}".rstrip() + "\n"

    def _render_base(self, imp: _Imports) -> str:
        imp.add(_ORM, "DeclarativeBase")
        imp.add(_SA, "MetaData")
        lines = ["class Base(DeclarativeBase):", "    pass", ""]
        lines.append("")
        lines.append("# Views are Tables on their own MetaData: created as views by the DDL below, never as tables.")
        lines.append("view_metadata = MetaData()")
        schemas = sorted(
            (
                {e.table.schema for e in self.entities.values()}
                | {e.schema for e in self.db.enums() if e.key in self.enum_names}
                | {d.schema for d in self.db.domains()}
                | {s.schema for s in self.db.sequences() if s.key in self.seq_names}
                | {x.schema for x in self.db.extensions}
                | {s.name for s in self.db.schemas if s.functions and "nofunctions" not in self.options}
            )
            - {m.DEFAULT_SCHEMA}
        )
        if schemas or self.db.extensions:
            imp.add(_SA, "DDL")
            imp.add(_SA, "event")
            if schemas:
                lines += ["", "# create_all does not create schemas: these run first."]
            for schema in schemas:
                stmt = f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}"
                lines.append(f'event.listen(Base.metadata, "before_create", DDL({_py(stmt)}))')
            if self.db.extensions:
                lines += ["", "# Extensions the models need (types, operator classes, functions), in their schemas."]
            for ext in self.db.extensions:
                lines.append(f'event.listen(Base.metadata, "before_create", DDL({_py(extension_sql(ext))}))')
        if self.needs_raw or self.layout == "package":
            imp.add("sqlalchemy.types", "UserDefinedType")
            imp.add("typing", "Any")
            lines += [
                "",
                "",
                "class PgType(UserDefinedType[Any]):",
                '    """A PostgreSQL type SQLAlchemy has no class for, written as PostgreSQL prints it."""',
                "",
                "    cache_ok = True",
                "",
                "    def __init__(self, spec: str) -> None:",
                "        self.spec = spec",
                "",
                "    def get_col_spec(self, **kw: Any) -> str:",
                "        return self.spec",
            ]
        return "\n".join(lines)

    def _render_module(self, module: str, imp: _Imports) -> list[str]:
        chunks: list[str] = []
        schemas_here = [s for s in self.db.schemas if self.module_of(s.name) == module]
        enums = [e for e in self.db.enums() if self.module_of(e.schema) == module and e.key in self.enum_names]
        for enum in enums:
            chunks.append(self._render_enum(enum, imp))
        objects = []
        for domain in self.db.domains():
            if self.module_of(domain.schema) == module:
                objects.append(self._render_domain(domain, imp, module))
        for schema in schemas_here:
            for seq in schema.sequences:
                if seq.key in self.seq_names:
                    objects.append(self._render_sequence(seq, imp))
        if objects:
            chunks.append("\n".join(objects))
        ents = [e for e in self.entities.values() if e.module == module and e.form != "view"]
        ents.sort(key=lambda e: (e.form == "stub", e.key))
        for ent in ents:
            if ent.form in ("class", "stub"):
                chunks.append(self._render_class(ent, imp, module))
            else:
                chunks.append(self._render_table(ent, imp, module))
        views = [e for e in self.entities.values() if e.module == module and e.form == "view"]
        for ent in sorted(views, key=lambda e: e.key):
            chunks.append(self._render_table(ent, imp, module))
        # unused enums still belong to the schema: bind them to the metadata so create_all makes them
        return chunks

    def _render_enum(self, enum: m.Enum, imp: _Imports) -> str:
        self._std("enum", imp)
        name = self.enum_names[enum.key]
        lines = [f"class {name}(enum.StrEnum):"]
        used: set[str] = set()
        for label in enum.labels:
            member = re.sub(r"\W+", "_", unicodedata.normalize("NFKC", label)).strip("_").upper() or "EMPTY"
            if member[0].isdigit():
                member = "V_" + member
            while member in used or keyword.iskeyword(member) or member.startswith("_"):
                member += "_"
            used.add(member)
            lines.append(f"    {member} = {_py(label)}")
        if not enum.labels:
            lines.append("    pass")
        used_somewhere = any(
            c.type.kind == "enum" and (c.type.schema, c.type.name) == enum.key
            for e in self.entities.values()
            for c in e.columns
        )
        if not used_somewhere:  # no column creates it: bind the type to the metadata so create_all does
            imp.add(_SA, "Enum")
            schema = f", schema={_py(enum.schema)}" if enum.schema != m.DEFAULT_SCHEMA else ""
            lines += [
                "",
                "",
                f"{self.enum_type_names[enum.key]} = Enum({name}, name={_py(enum.name)}{schema}, "
                "metadata=Base.metadata, values_callable=lambda cls: [member.value for member in cls])",
            ]
        return "\n".join(_wrap(line) for line in lines)

    def _render_domain(self, domain: m.Domain, imp: _Imports, module: str) -> str:
        imp.add(_PG, "DOMAIN")
        base, _ = self._element_type(domain.base, None, imp, module)
        if domain.base.dims:
            imp.add(_PG, "ARRAY")
            base = f"ARRAY({base})"
        args = [_py(domain.name), base]
        if domain.collation:
            args.append(f"collation={_py(domain.collation)}")
        if domain.default is not None:
            args.append(f"default={_sql_text(domain.default)}")
            imp.add(_SA, "text")
        if not domain.nullable and not domain.checks:
            args.append("not_null=True")  # with a named CHECK: ALTER DOMAIN ... SET NOT NULL (ddl.domain_not_null)
        if domain.checks:
            check = domain.checks[0]
            args.append(f"constraint_name={_py(check.name)}")
            args.append(f"check={_sql_text(check.expression)}")
            imp.add(_SA, "text")
            if len(domain.checks) > 1:
                self.notes.append(
                    f"domain {domain.schema}.{domain.name}: SQLAlchemy's DOMAIN takes one CHECK; "
                    f"{len(domain.checks) - 1} more are not generated."
                )
        if domain.schema != m.DEFAULT_SCHEMA:
            args.append(f"schema={_py(domain.schema)}")
        used = any(
            c.type.kind == "domain" and (c.type.schema, c.type.name) == domain.key
            for e in self.entities.values()
            for c in e.columns
        )
        if not used:
            args.append("metadata=Base.metadata")
        return _wrap(f"{self.domain_names[domain.key]} = DOMAIN({', '.join(args)})")

    def _render_sequence(self, seq: m.Sequence, imp: _Imports) -> str:
        imp.add(_SA, "Sequence")
        args = [_py(seq.name)]
        if seq.start != (1 if seq.increment > 0 else (seq.maxvalue if seq.maxvalue is not None else -1)):
            args.append(f"start={seq.start}")
        args += _sequence_options(seq)
        if seq.data_type != "bigint":
            cls = {"integer": "Integer", "smallint": "SmallInteger"}.get(seq.data_type, "BigInteger")
            args.append(f"data_type={imp.add(_SA, cls)}")
        if seq.schema != m.DEFAULT_SCHEMA:
            args.append(f"schema={_py(seq.schema)}")
        args.append("metadata=Base.metadata")
        return _wrap(f"{self.seq_names[seq.key]} = Sequence({', '.join(args)})")

    # -- tables -----------------------------------------------------------------------------------------
    def _fk_target(self, fk: m.ForeignKey, col: str) -> str:
        if fk.ref_schema == m.DEFAULT_SCHEMA:
            return f"{fk.ref_table}.{col}"
        return f"{fk.ref_schema}.{fk.ref_table}.{col}"

    def _fk_is_rendered(self, fk: m.ForeignKey) -> bool:
        return (fk.ref_schema, fk.ref_table) in self.entities and not fk.inherited

    def _fk_kwargs(self, fk: m.ForeignKey) -> list[str]:
        out = []
        if fk.on_delete != "NO ACTION":
            out.append(f"ondelete={_py(fk.on_delete)}")
        if fk.on_update != "NO ACTION":
            out.append(f"onupdate={_py(fk.on_update)}")
        if fk.deferrable:
            out.append("deferrable=True")
        if fk.initially_deferred:
            out.append('initially="DEFERRED"')
        if fk.match != "SIMPLE":
            out.append(f"match={_py(fk.match)}")
        return out

    def _constraints(self, ent: _Entity, imp: _Imports) -> tuple[dict[str, list[str]], list[str]]:
        """Per-column extras (ForeignKey, primary_key, unique) and table-level constructs."""
        t = ent.table
        per_col: dict[str, list[str]] = {c.name: [] for c in ent.columns}
        table_level: list[str] = []
        if ent.form == "stub":
            for c in ent.stub_pk:
                per_col[c].append("primary_key=True")
            return per_col, table_level
        pk = t.primary_key
        if pk is not None and not pk.inherited:
            in_order = [c.name for c in t.columns if c.name in pk.columns] == pk.columns
            if pk.name == _limit(f"{t.name}_pkey") and in_order:
                for c in pk.columns:
                    per_col[c].append("primary_key=True")
            else:
                cols = ", ".join(_py(c) for c in pk.columns)
                table_level.append(f"{imp.add(_SA, 'PrimaryKeyConstraint')}({cols}, name={_py(pk.name)})")
        for fk in t.foreign_keys:
            if not self._fk_is_rendered(fk):
                continue
            kwargs = self._fk_kwargs(fk)
            default_name = _limit(f"{t.name}_{'_'.join(fk.columns)}_fkey")
            if len(fk.columns) == 1:
                # drop_all drops FKs of a cycle by name (ALTER TABLE ... DROP CONSTRAINT): name them
                if fk.name != default_name or (t.key in self.cyclic and (fk.ref_schema, fk.ref_table) in self.cyclic):
                    kwargs.insert(0, f"name={_py(fk.name)}")
                args = ", ".join([_py(self._fk_target(fk, fk.ref_columns[0])), *kwargs])
                per_col[fk.columns[0]].append(f"{imp.add(_SA, 'ForeignKey')}({args})")
            else:
                cols = ", ".join(_py(c) for c in fk.columns)
                refs = ", ".join(_py(self._fk_target(fk, c)) for c in fk.ref_columns)
                args = ", ".join([f"[{cols}]", f"[{refs}]", f"name={_py(fk.name)}", *kwargs])
                table_level.append(f"{imp.add(_SA, 'ForeignKeyConstraint')}({args})")
        if "noconstraints" not in self.options:
            for uq in t.unique_constraints:
                if uq.inherited:
                    continue
                simple = not (uq.nulls_not_distinct or uq.deferrable)
                if len(uq.columns) == 1 and uq.name == _limit(f"{t.name}_{uq.columns[0]}_key") and simple:
                    per_col[uq.columns[0]].append("unique=True")
                    continue
                uq_args = [_py(c) for c in uq.columns] + [f"name={_py(uq.name)}"]
                if uq.nulls_not_distinct:
                    uq_args.append("postgresql_nulls_not_distinct=True")
                if uq.deferrable:
                    uq_args.append("deferrable=True")
                if uq.initially_deferred:
                    uq_args.append('initially="DEFERRED"')
                table_level.append(f"{imp.add(_SA, 'UniqueConstraint')}({', '.join(uq_args)})")
            for ck in t.check_constraints:
                if ck.inherited:
                    continue
                imp.add(_SA, "text")
                table_level.append(
                    f"{imp.add(_SA, 'CheckConstraint')}({_sql_text(ck.expression)}, name={_py(ck.name)})"
                )
        if "noindexes" not in self.options:
            for ix in t.indexes:
                if not ix.inherited:
                    table_level.append(self._render_index(ix, imp))
        return per_col, table_level

    def _render_index(self, ix: m.Index, imp: _Imports) -> str:
        imp.add(_SA, "Index")
        elems = []
        for col in ix.columns:
            plain = not (col.is_expression or col.opclass or col.descending or col.nulls_first is not None)
            if plain:
                elems.append(_py(_unquote(col.expression)))
                continue
            sql = f"({col.expression})" if col.is_expression else col.expression
            if col.opclass:
                sql += f" {col.opclass}"
            if col.descending:
                sql += " DESC"
            if col.nulls_first is not None:
                sql += " NULLS FIRST" if col.nulls_first else " NULLS LAST"
            imp.add(_SA, "text")
            elems.append(_sql_text(sql))
        args = [_py(ix.name), *elems]
        if ix.unique:
            args.append("unique=True")
        if ix.method != "btree":
            args.append(f"postgresql_using={_py(ix.method)}")
        if ix.include:
            args.append(f"postgresql_include=[{', '.join(_py(_unquote(c)) for c in ix.include)}]")
        if ix.nulls_not_distinct:
            args.append("postgresql_nulls_not_distinct=True")
        if ix.options:
            opts = ", ".join(f"{_py(k)}: {_py(v)}" for k, v in ix.options.items())
            args.append(f"postgresql_with={{{opts}}}")
        if ix.where:
            imp.add(_SA, "text")
            args.append(f"postgresql_where={_sql_text(ix.where)}")
        return f"Index({', '.join(args)})"

    def _column_args(
        self, ent: _Entity, col: m.Column, extras: list[str], imp: _Imports, module: str
    ) -> tuple[list[str], str]:
        """Positional and keyword arguments of ``mapped_column``/``Column`` (without the name) and the Python type."""
        t = ent.table
        type_expr, py = self.column_type(col, imp, module)
        args = [type_expr]
        kwargs: list[str] = []
        seq_key = _nextval(col.default)
        serial = (t.schema, t.name, col.name) in self.serial_columns and ent.form != "stub"
        if ent.form != "stub":
            if col.identity is not None:
                args.append(self._render_identity(col, imp))
            if col.generated is not None:
                imp.add(_SA, "Computed")
                args.append(f"Computed({_py(col.generated)}, persisted=True)")
            seq_var = None
            if seq_key is not None and not serial:
                seq_var = self.seq_names.get((seq_key[0] or t.schema, seq_key[1]))
            if seq_var is not None:
                args.append(self._import_seq(seq_var, (seq_key[0] or t.schema), imp, module))  # type: ignore[index]
                kwargs.append(f"server_default={seq_var}.next_value()")
            elif col.default is not None and not serial:
                imp.add(_SA, "text")
                kwargs.append(f"server_default={_sql_text(col.default)}")
        pos = [a for a in extras if not a.endswith("=True")]
        flags = [a for a in extras if a.endswith("=True")]
        args += pos
        kwargs = flags + kwargs
        if self._needs_autoincrement_off(ent, col, serial, seq_key):
            kwargs.append("autoincrement=False")
        if col.comment and "nocomments" not in self.options and ent.form != "stub":
            kwargs.append(f"comment={_py(col.comment)}")
        return args + kwargs, py

    def _needs_autoincrement_off(
        self, ent: _Entity, col: m.Column, serial: bool, seq_key: tuple[str | None, str] | None
    ) -> bool:
        """A single-column integer key without a default: SQLAlchemy would make it SERIAL unless told not to.

        Decided from the reflected key (named or not, column flag or table-level constraint), never from
        the rendered arguments, and SQLAlchemy skips SERIAL for a column that also has a foreign key."""
        pk = ent.table.primary_key
        return (
            ent.form != "stub"
            and pk is not None
            and not pk.inherited
            and pk.columns == [col.name]
            and col.type.name in ("int2", "int4", "int8")
            and col.type.dims == 0
            and not serial
            and col.identity is None
            and col.generated is None
            and seq_key is None
            and col.default is None
            and not any(fk.columns == [col.name] and self._fk_is_rendered(fk) for fk in ent.table.foreign_keys)
        )

    def _import_seq(self, var: str, schema: str, imp: _Imports, module: str) -> str:
        return self._import_object(var, schema, imp, module)

    def _render_identity(self, col: m.Column, imp: _Imports) -> str:
        imp.add(_SA, "Identity")
        ident = col.identity
        assert ident is not None
        args = ["always=True"] if ident.always else []
        if ident.start != (1 if ident.increment > 0 else -1):
            args.append(f"start={ident.start}")
        args += _sequence_options(ident)
        return f"Identity({', '.join(args)})"

    def _table_options(self, t: m.Table) -> list[tuple[str, str]]:
        opts: list[tuple[str, str]] = []
        if t.schema != m.DEFAULT_SCHEMA:
            opts.append(("schema", _py(t.schema)))
        if t.comment and "nocomments" not in self.options:
            opts.append(("comment", _py(t.comment)))
        if t.partition_key:
            opts.append(("postgresql_partition_by", _py(t.partition_key)))
        if t.unlogged:
            opts.append(("prefixes", '["UNLOGGED"]'))
        return opts

    def _render_class(self, ent: _Entity, imp: _Imports, module: str) -> str:
        imp.add(_ORM, "Mapped")
        imp.add(_ORM, "mapped_column")
        t = ent.table
        per_col, table_level = self._constraints(ent, imp)
        lines = [f"class {ent.name}(Base):"]
        if ent.form == "stub":
            lines.append(
                f'    """Stand-in for {t.qualified_name}, which this project does not own: only the columns '
                'the foreign keys use.\n\n    create_all skips it where it exists (as on Supabase)."""'
            )
            lines.append("")
        lines.append(f"    __tablename__ = {_py(t.name)}")
        opts = (
            self._table_options(t)
            if ent.form == "class"
            else [("schema", _py(t.schema))] * (t.schema != m.DEFAULT_SCHEMA)
        )
        if table_level or opts:
            dict_part = "{" + ", ".join(f"{_py(k)}: {v}" for k, v in opts) + "}"
            if table_level:
                items = table_level + ([dict_part] if opts else [])
                one = f"    __table_args__ = ({items[0]},)"
                if len(items) == 1 and len(one) <= 120:
                    lines.append(one)
                else:
                    lines.append("    __table_args__ = (")
                    lines += [f"        {item}," for item in items]
                    lines.append("    )")
            else:
                lines.append(f"    __table_args__ = {dict_part}")
        lines.append("")
        for col in ent.columns:
            attr = ent.attrs[col.name]
            args, py = self._column_args(ent, col, per_col[col.name], imp, module)
            if attr != col.name:
                args.insert(0, _py(col.name))
            nullable = col.nullable and "primary_key=True" not in args
            annotation = f"{py} | None" if nullable else py
            self._annotation_imports(annotation, imp)
            if ent.form == "stub" and "primary_key=True" not in args and not col.nullable:
                pass
            lines.append(f"    {attr}: Mapped[{annotation}] = mapped_column({', '.join(args)})")
        if ent.rels:
            imp.add(_ORM, "relationship")
            lines.append("")
            for rel in ent.rels:
                lines.append("    " + self._render_rel(rel, imp, module))
        return "\n".join(_wrap(line) for line in lines)

    def _render_rel(self, rel: _Rel, imp: _Imports, module: str) -> str:
        target = rel.target.name
        if self.layout == "package" and rel.target.module != module:
            imp.add("typing", "TYPE_CHECKING")
            imp.type_checking.setdefault("." + rel.target.module, set()).add(target)
        if rel.many:
            annotation = f'list["{target}"]'
        elif rel.optional:
            annotation = f'"{target} | None"'
        else:
            annotation = f'"{target}"'
        args = []
        if rel.secondary:
            args.append(f"secondary={_py(rel.secondary)}")
        if rel.foreign_keys:
            args.append(f"foreign_keys=[{', '.join(rel.foreign_keys)}]")
        if rel.foreign_keys_expr:
            args.append(f"foreign_keys={_py(rel.foreign_keys_expr)}")
        if rel.remote_side:
            args.append(f"remote_side=[{', '.join(rel.remote_side)}]")
        if rel.back:
            args.append(f"back_populates={_py(rel.back)}")
        return f"{rel.name}: Mapped[{annotation}] = relationship({', '.join(args)})"

    def _render_table(self, ent: _Entity, imp: _Imports, module: str) -> str:
        imp.add(_SA, "Table")
        imp.add(_SA, "Column")
        t = ent.table
        view = ent.form == "view"
        if view:
            if self.layout == "package":
                imp.add("._base", "view_metadata")
            per_col: dict[str, list[str]] = {c.name: [] for c in ent.columns}
            table_level: list[str] = []
        else:
            per_col, table_level = self._constraints(ent, imp)
        items = [_py(t.name), "view_metadata" if view else "Base.metadata"]
        for col in ent.columns:
            if view:
                type_expr, _ = self.column_type(col, imp, module)
                items.append(f"Column({_py(col.name)}, {type_expr})")
                continue
            args, _ = self._column_args(ent, col, per_col[col.name], imp, module)
            if not col.nullable and "primary_key=True" not in args:
                args.append("nullable=False")
            items.append(f"Column({', '.join([_py(col.name), *args])})")
        items += table_level
        opts = self._table_options(t) if not view else ([("schema", _py(t.schema))] if t.schema != "public" else [])
        if view and t.comment and "nocomments" not in self.options:
            opts.append(("comment", _py(t.comment)))
        items += [f"{k}={v}" for k, v in opts]
        if view:
            items.append(f'info={{"kind": {_py(t.kind)}}}')
        body = "".join(f"    {item},\n" for item in items)
        return "\n".join(_wrap(line) for line in f"{ent.name} = Table(\n{body})".split("\n"))


def _cyclic_tables(tables: list[m.Table]) -> set[tuple[str, str]]:
    """Tables on a foreign-key cycle of two or more tables (Kosaraju's strongly connected components)."""
    keys = {(t.schema, t.name) for t in tables}
    edges: dict[tuple[str, str], set[tuple[str, str]]] = {k: set() for k in keys}
    for t in tables:
        own = (t.schema, t.name)
        for fk in t.foreign_keys:
            ref = (fk.ref_schema, fk.ref_table)
            if ref in keys and ref != own:
                edges[own].add(ref)
    reverse: dict[tuple[str, str], set[tuple[str, str]]] = {k: set() for k in keys}
    for src, dsts in edges.items():
        for dst in dsts:
            reverse[dst].add(src)
    order: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for start in sorted(keys):
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter(sorted(edges[start])))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                order.append(node)
            elif child not in seen:
                seen.add(child)
                stack.append((child, iter(sorted(edges[child]))))
    cyclic: set[tuple[str, str]] = set()
    assigned: set[tuple[str, str]] = set()
    for root in reversed(order):
        if root in assigned:
            continue
        component, todo = [], [root]
        assigned.add(root)
        while todo:
            node = todo.pop()
            component.append(node)
            for nxt in reverse[node]:
                if nxt not in assigned:
                    assigned.add(nxt)
                    todo.append(nxt)
        if len(component) > 1:
            cyclic.update(component)
    return cyclic


@functools.lru_cache(maxsize=4096)
def _names_in(annotation: str) -> tuple[str, ...]:
    return tuple(std for std in ("datetime", "uuid", "Decimal", "Any", "Range") if re.search(rf"\b{std}\b", annotation))


def _call(name: str, args: str) -> str:
    return f"{name}({args})" if args else name


def _key(t: m.Table) -> str:
    return t.name if t.schema == m.DEFAULT_SCHEMA else f"{t.schema}.{t.name}"


def _limit(name: str) -> str:
    """PostgreSQL's default constraint names are only predictable below the 63-byte limit."""
    return name if len(name.encode()) <= 63 else "\0"  # never equal to a real name: render it explicitly


@functools.lru_cache(maxsize=4096)
def _nextval(default: str | None) -> tuple[str | None, str] | None:
    if not default:
        return None
    found = re.fullmatch(r"nextval\('((?:[^']|'')+)'::regclass\)", default)
    if not found:
        return None
    return _split_qualified(found.group(1).replace("''", "'"))


def is_unique(t: m.Table, columns: list[str]) -> bool:
    wanted = set(columns)
    if t.primary_key is not None and set(t.primary_key.columns) == wanted:
        return True
    if any(set(u.columns) == wanted for u in t.unique_constraints):
        return True
    return any(
        ix.unique
        and ix.where is None
        and not any(c.is_expression for c in ix.columns)
        and {_unquote(c.expression) for c in ix.columns} == wanted
        for ix in t.indexes
    )


def check_options(options: Iterable[str]) -> frozenset[str]:
    """The options as a set (``"a,b"`` counts as two); unknown ones raise with the list of valid ones."""
    opts = frozenset(part.strip() for o in options if o for part in o.split(",") if part.strip())
    invalid = sorted(opts - VALID_OPTIONS)
    if invalid:
        raise CodegenError(
            f"Unrecognized option(s): {', '.join(invalid)}. Valid options: {', '.join(sorted(VALID_OPTIONS))}."
        )
    return opts


def generate(
    db: m.Database,
    options: Iterable[str] = (),
    *,
    external: External = "standin",
    layout: Layout = "file",
    command: str | None = None,
) -> GeneratedCode:
    """Generate SQLAlchemy 2.0 models for ``db``.

    ``external`` says what to do with tables outside the selection that foreign keys point to (the usual
    ``auth.users``): ``standin`` emits a minimal model with the referenced columns (create_all skips it
    where the table exists), ``include`` generates them in full, ``plain`` keeps the foreign key as DDL
    without a model (the table must exist when create_all runs). ``layout="package"`` writes one module
    per schema.
    """
    opts = check_options(options)
    if external not in EXTERNAL_MODES:
        raise CodegenError(f"external={external!r} is not one of {', '.join(EXTERNAL_MODES)}.")
    if layout not in LAYOUTS:
        raise CodegenError(f"layout={layout!r} is not one of {', '.join(LAYOUTS)}.")
    gen = _Generator(db, opts, external, layout)
    gen.plan()
    schemas = ", ".join(s.name for s in db.schemas)
    how = command or "workbench models export"
    header = (
        f'"""SQLAlchemy models of schema {schemas}, generated by Supabase Workbench ({how}).\n\n'
        "Views are Tables on ``view_metadata``; create_all makes them views, attaches partitions and restores\n"
        'row level security and policies (see the end of the file)."""'
    )
    if layout == "package":
        header = header.replace("the end of the file", "_ddl.py")
    return gen.render(header)


def _sequence_options(seq: m.Sequence | m.ColumnIdentity) -> list[str]:
    """The options a Sequence and an Identity column share, rendered only where they differ from the defaults."""
    args = []
    if seq.increment != 1:
        args.append(f"increment={seq.increment}")
    if seq.minvalue is not None:
        args.append(f"minvalue={seq.minvalue}")
    if seq.maxvalue is not None:
        args.append(f"maxvalue={seq.maxvalue}")
    if seq.cache != 1:
        args.append(f"cache={seq.cache}")
    if seq.cycle:
        args.append("cycle=True")
    return args
