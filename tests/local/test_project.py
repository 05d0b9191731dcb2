"""A Supabase CLI project folder in a real stand-in, end to end through the CLI, Python and the magic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell

from workbench.cli import main
from workbench.local import project
from workbench.local.standin import LocalStandIn
from workbench.notebook import session as core
from workbench.notebook.bridge import run_sync

ALICE = "aaaaaaaa-0000-4000-8000-000000000001"
BOB = "bbbbbbbb-0000-4000-8000-000000000002"

INIT = """\
-- notes, one owner each
create table public.notes (
  id bigint generated always as identity primary key,
  owner_id uuid not null references auth.users (id) on delete cascade,
  title text not null,
  created_at timestamptz not null default now()
);
alter table public.notes enable row level security;
create policy "owners read notes" on public.notes
  for select to authenticated using ((select auth.uid()) = owner_id);
create policy "owners add notes" on public.notes
  for insert to authenticated with check ((select auth.uid()) = owner_id);
grant select, insert, update, delete on public.notes to authenticated;
"""
FUNCTIONS = """\
create function public.tidy_title() returns trigger language plpgsql set search_path = '' as $$
begin
  new.title := trim(new.title);  -- a semicolon inside the body; the file runs as PostgreSQL runs a file
  return new;
end;
$$;
create trigger notes_tidy before insert or update on public.notes
  for each row execute function public.tidy_title();
"""
STORAGE = """\
insert into storage.buckets (id, name, public) values ('avatars', 'avatars', false);
create policy "own avatar folder" on storage.objects for select to authenticated
  using (bucket_id = 'avatars' and (storage.foldername(name))[1] = (select auth.uid())::text);
"""
SEED_USERS = f"""\
insert into auth.users (id, email) values ('{ALICE}', 'alice@project.test'), ('{BOB}', 'bob@project.test');
"""
SEED_NOTES = f"""\
insert into public.notes (owner_id, title) values
  ('{ALICE}', '  first  '), ('{ALICE}', 'second'), ('{BOB}', 'bob''s');
"""
CONFIG = """\
project_id = "notes-app"

[db.seed]
enabled = true
sql_paths = ['./seed.sql', './seeds/*.sql', './seed.sql']
"""


def write_project(root: Path, migrations: dict[str, str], *, seeds: bool = True) -> Path:
    folder = root / "supabase" / "migrations"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for name, text in migrations.items():
        (folder / name).write_text(text)
    if seeds:
        (root / "supabase" / "config.toml").write_text(CONFIG)
        (root / "supabase" / "seed.sql").write_text(SEED_USERS)
        (root / "supabase" / "seeds").mkdir(exist_ok=True)
        (root / "supabase" / "seeds" / "10_notes.sql").write_text(SEED_NOTES)
    return root


BASE = {
    "20240101000000_init.sql": INIT,
    "20240102000000_functions.sql": FUNCTIONS,
    "20240103000000_storage.sql": STORAGE,
    "README.md": "not a migration",
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStandIn]:
    standin = LocalStandIn(tmp_path_factory.mktemp("project-standin") / "local")
    yield standin
    standin.destroy()


def fetch(standin: LocalStandIn, sql: str, *args: object) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(standin.dsn())
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return run_sync(go())


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# -- the folder --------------------------------------------------------------------------------------------
def test_folder_order_skips_and_seed_paths(tmp_path: Path) -> None:
    write_project(tmp_path, {"20240110000000_late.sql": "", "9_early.sql": "", **BASE})
    found = project.find_project(tmp_path / "supabase")  # the supabase/ folder is accepted too
    assert [m.filename for m in found.migrations] == [
        "9_early.sql",  # numeric order of the version, not text order
        "20240101000000_init.sql",
        "20240102000000_functions.sql",
        "20240103000000_storage.sql",
        "20240110000000_late.sql",
    ]
    assert any("README.md" in w and "<timestamp>_name.sql" in w for w in found.warnings)
    # sql_paths in the order listed, globs expanded, a file named twice runs once
    assert [p.relative_to(found.supabase_dir).as_posix() for p in found.seed_files] == [
        "seed.sql",
        "seeds/10_notes.sql",
    ]


def test_folder_without_migrations_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(project.ProjectError, match=r"expected .*supabase/migrations"):
        project.find_project(tmp_path)
    code, _, err = cli(capsys, "local", "start", "--dir", str(tmp_path / "sb"), "--project", str(tmp_path))
    assert code == 1 and "is not a Supabase project folder" in err
    assert not (tmp_path / "sb").exists()  # nothing was started for a wrong folder


def test_a_database_with_the_demo_is_refused(standin: LocalStandIn, tmp_path: Path) -> None:
    write_project(tmp_path, BASE)
    with pytest.raises(project.ProjectError, match="reset --project"):
        project.load_project(tmp_path, dsn=standin.dsn())
    assert fetch(standin, "select to_regnamespace('supabase_migrations') is null as gone")[0]["gone"]


# -- start, re-run, RLS ------------------------------------------------------------------------------------
def test_start_project_applies_migrations_and_seed_then_only_new_files(
    folder: LocalStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path, BASE)
    code, out, err = cli(capsys, "local", "start", "--dir", str(folder.data_dir), "--project", str(root))
    assert code == 0, err
    assert "applying 20240101000000_init.sql (1/3) ... ok" in out
    assert "applying 20240103000000_storage.sql (3/3) ... ok" in out
    assert "seeding seeds/10_notes.sql (2/2) ... ok" in out
    assert "README.md" in err  # the skipped file is named
    rows = fetch(folder, "select version, name, statements from supabase_migrations.schema_migrations order by 1")
    assert [(r["version"], r["name"]) for r in rows] == [
        ("20240101000000", "init"),
        ("20240102000000", "functions"),
        ("20240103000000", "storage"),
    ]
    assert len(rows[1]["statements"]) == 2  # the function (one statement despite its inner semicolons) + trigger
    assert [r["title"] for r in fetch(folder, "select title from public.notes order by id")] == [
        "first",  # trimmed by the trigger from migration 2
        "second",
        "bob's",
    ]
    assert fetch(folder, "select to_regclass('public.tasks') is null as no_demo")[0]["no_demo"]

    (root / "supabase" / "migrations" / "20240104000000_tags.sql").write_text(
        "begin;\ncreate table public.tags (id int primary key, label text);\ncommit;\n"  # its own transaction
    )
    code, out, err = cli(capsys, "local", "start", "--dir", str(folder.data_dir), "--project", str(root))
    assert code == 0, err
    assert "applying 20240104000000_tags.sql (1/1) ... ok" in out and "init.sql" not in out
    assert "1 migration(s) applied, 3 already applied" in out
    assert "seed not run: the project was loaded here before" in out
    assert fetch(folder, "select count(*) as n from public.notes")[0]["n"] == 3  # the seed did not run twice
    assert fetch(folder, "select count(*) as n from supabase_migrations.schema_migrations")[0]["n"] == 4

    (root / "supabase" / "migrations" / "20240104000000_tags.sql").unlink()  # applied, then its file went away
    code, out, err = cli(capsys, "local", "start", "--dir", str(folder.data_dir), "--project", str(root))
    assert code == 0 and "applied versions with no file in" in err and "20240104000000" in err


@pytest.fixture()
def ip(folder: LocalStandIn, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    from IPython.testing.globalipapp import get_ipython, start_ipython

    monkeypatch.setenv("WORKBENCH_LOCAL_DIR", str(folder.data_dir))
    shell = start_ipython() or get_ipython()
    assert shell is not None
    shell.run_line_magic("load_ext", "workbench")
    yield shell
    core.current().close()


def test_magic_loads_the_project_and_rls_works_per_identity(ip: InteractiveShell, tmp_path: Path) -> None:
    root = write_project(tmp_path, BASE)
    ip.run_line_magic("sbconnect", f"local --project {root} --reset")
    count = "select count(*) as n from public.notes"
    assert ip.run_cell_magic("sbquery", "--as alice@project.test", count)["n"][0] == 2
    assert ip.run_cell_magic("sbquery", "--as bob@project.test", count)["n"][0] == 1
    assert ip.run_cell_magic("sbquery", "--role anon", count)["n"][0] == 0
    assert ip.run_cell_magic("sbquery", "--role service_role", count)["n"][0] == 3
    refused = "insert into public.notes (owner_id, title) values ('" + BOB + "', 'forged') returning id"
    from workbench.core.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="(?i)row-level security refused the INSERT"):
        ip.run_cell_magic("sbquery", "--as alice@project.test --write", refused)
    ip.run_line_magic("sblocal", f"--project {root}")  # loaded already: nothing new, still connected
    assert ip.run_cell_magic("sbquery", "--as bob@project.test", count)["n"][0] == 1


# -- failures ----------------------------------------------------------------------------------------------
BAD_SYNTAX = """\
create table public.tags (id int primary key);
-- the next statement has a typo
create table public.labels (
  id int primary key,
  name text not nul
);
"""
DUPLICATE = """\
create table public.tags (id int primary key);
insert into public.tags values (1);

-- notes exist since the first migration
create table public.notes (
  id int primary key
);
"""


@pytest.mark.parametrize(
    ("text", "line", "shown", "message"),
    [
        (BAD_SYNTAX, 5, "create table public.labels (", 'syntax error at or near "nul"'),
        (DUPLICATE, 5, "create table public.notes (", 'relation "notes" already exists'),
    ],
    ids=["syntax-error", "runtime-error"],
)
def test_failing_migration_names_file_line_statement_and_leaves_the_standin_usable(
    folder: LocalStandIn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    line: int,
    shown: str,
    message: str,
) -> None:
    root = write_project(
        tmp_path,
        {"20240101000000_init.sql": INIT, "20240102000000_more.sql": text, "20240103000000_storage.sql": STORAGE},
    )
    code, out, err = cli(capsys, "local", "reset", "--dir", str(folder.data_dir), "--project", str(root))
    assert code == 1
    assert "applying 20240101000000_init.sql (1/3) ... ok" in out
    assert "applying 20240102000000_more.sql (2/3) ... failed" in out
    assert f"migration 20240102000000_more.sql, line {line} failed: {message}" in err
    assert f"    {shown}" in err  # the statement's first lines
    assert "was rolled back; the 1 file(s) before it stay applied" in err
    assert "storage.sql" not in out  # nothing after the failure ran
    # usable: file 1 applied and recorded, file 2 rolled back entirely, queries and the API work
    versions = [r["version"] for r in fetch(folder, "select version from supabase_migrations.schema_migrations")]
    assert versions == ["20240101000000"]
    assert fetch(folder, "select to_regclass('public.tags') is null as gone")[0]["gone"]
    assert fetch(folder, "select count(*) as n from public.notes")[0]["n"] == 0
    assert httpx.get(f"{folder.api_url()}/auth/v1/health", timeout=5).status_code == 200
    assert httpx.get(f"{folder.api_url()}/storage/v1/bucket", timeout=5).status_code in (400, 401, 403)

    # the fix, then the same command: only what is missing runs (no seed: the project was loaded before)
    (root / "supabase" / "migrations" / "20240102000000_more.sql").write_text(FUNCTIONS)
    code, out, err = cli(capsys, "local", "start", "--dir", str(folder.data_dir), "--project", str(root))
    assert code == 0, err
    assert "2 migration(s) applied, 1 already applied" in out


def test_reset_reapplies_everything_and_seeds(
    folder: LocalStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path, BASE)
    code, _, err = cli(capsys, "local", "reset", "--dir", str(folder.data_dir), "--project", str(root))
    assert code == 0, err
    fetch(folder, "insert into public.notes (owner_id, title) values ($1, 'scratch')", ALICE)
    keys_before = folder.keys().anon_key
    code, out, err = cli(capsys, "local", "reset", "--dir", str(folder.data_dir), "--project", str(root))
    assert code == 0, err
    assert "3 migration(s) applied, 0 already applied, seed: seed.sql, seeds/10_notes.sql" in out
    assert [r["title"] for r in fetch(folder, "select title from public.notes order by id")] == [
        "first",
        "second",
        "bob's",
    ]
    assert folder.keys().anon_key == keys_before  # a reset of the database, not of the stand-in's keys
    assert (root / "supabase" / "migrations" / "20240101000000_init.sql").exists()
    assert fetch(folder, "select count(*) as n from storage.buckets")[0]["n"] == 1
    assert fetch(folder, "select rolsuper from pg_roles where rolname = 'service_role'")[0]["rolsuper"] is False


def test_reset_refuses_a_folder_that_is_not_a_standins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_project(tmp_path / "app", BASE)
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    code, _, err = cli(capsys, "local", "reset", "--dir", str(other), "--project", str(root))
    assert code == 2 and "not a local stand-in's folder" in err
    assert (other / "precious.txt").read_text() == "keep me"
