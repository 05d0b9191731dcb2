"""The ``workbench`` command: thin argument parsing over the package's own calls."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workbench.local.standin import LocalStandIn, StandInError, StandInStatus


def _standin(args: argparse.Namespace) -> LocalStandIn:
    return LocalStandIn(args.dir)


def _print_status(status: StandInStatus, standin: LocalStandIn, as_json: bool) -> None:
    keys = standin.keys() if standin.is_standin_folder() and (standin.data_dir / "keys.json").exists() else None
    data = status.as_dict(keys)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    state = {True: "running", False: "stopped"}
    rows = [
        ("Data folder", data["data_dir"]),
        ("Database", state[status.db_running]),
        ("DB URL", data["db_url"] or "-"),
        ("API", state[status.api_running]),
        ("API URL", data["api_url"] or "-"),
    ]
    if keys is not None:
        rows += [
            ("JWKS URL", data["jwks_url"] or "-"),
            ("DB password", data["db_password"] or "-"),
            ("JWT secret", keys.jwt_secret),
            ("anon key", keys.anon_key),
            ("service_role key", keys.service_role_key),
        ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:>{width}}: {value}")


def cmd_local(args: argparse.Namespace) -> int:
    standin = _standin(args)
    if args.action == "inbox":
        return _inbox(standin, args)
    if args.action == "pull":
        return _pull(standin, args)
    if args.project is not None:
        return _project(standin, args)
    action: dict[str, Callable[[], StandInStatus]] = {
        "start": lambda: standin.start(demo=not args.no_demo),
        "stop": standin.stop,
        "status": standin.status,
        "reset": lambda: standin.reset(demo=not args.no_demo),
    }
    status = action[args.action]()
    _print_status(status, standin, args.json)
    if args.action == "status" and not (status.db_running and status.api_running):
        return 1
    return 0


def _print_progress(event: Any) -> None:
    """``applying 20240101000000_init.sql (3/12) ... ok 45 ms``, the first half before the file runs."""
    if event.state == "applying":
        print(event.describe(), end="", flush=True)
    else:
        print(f" {event.state} {event.elapsed_ms:.0f} ms", flush=True)


def _project(standin: LocalStandIn, args: argparse.Namespace) -> int:
    """``workbench local start|reset --project PATH``: a Supabase CLI project folder in the stand-in."""
    from workbench.core.exceptions import WorkbenchUserError
    from workbench.local import project

    if args.action not in ("start", "reset"):
        raise StandInError(f"--project goes with `start` or `reset`, not `{args.action}`.")
    try:
        folder = project.find_project(args.project)  # a wrong folder fails before anything starts
        for warning in folder.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if args.action == "reset":
            report = project.reset_project(folder.root, standin, progress=_print_progress)
        else:
            if not (standin.is_standin_folder() and standin.status().db_running and standin.status().api_running):
                standin.start(demo=False)  # a new stand-in for a project has no demo app (no mixed tables)
            report = project.load_project(folder.root, standin, progress=_print_progress)
    except WorkbenchUserError as exc:
        if isinstance(exc, StandInError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in report.warnings:
        if warning not in folder.warnings:  # the folder's own were printed before loading
            print(f"warning: {warning}", file=sys.stderr)
    print("\n".join(line for line in report.describe().splitlines() if not line.startswith("warning: ")))
    _print_status(standin.status(), standin, args.json)
    return 0


def _pull(standin: LocalStandIn, args: argparse.Namespace) -> int:
    """``workbench local pull [--db-url URL] [--rows N]``: a real project's schema into the stand-in."""
    from workbench.core.exceptions import WorkbenchUserError
    from workbench.local.pull import pull_into_standin

    try:
        report = pull_into_standin(standin, db_url=args.db_url, rows=args.rows, progress=print)
    except WorkbenchUserError as exc:
        if isinstance(exc, StandInError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.describe())
    return 0


def _inbox(standin: LocalStandIn, args: argparse.Namespace) -> int:
    """``workbench local inbox [--to ADDRESS] [--clear] [--json]``: the mails the local Auth caught."""
    from workbench.local.inbox import Inbox, describe

    if not standin.is_standin_folder():  # never read, let alone clear, an "inbox" in someone else's folder
        raise StandInError(
            f"{standin.data_dir} is not a local stand-in's folder, so it has no inbox. Fix: pass the folder "
            "`workbench local start --dir` used (or set WORKBENCH_LOCAL_DIR)."
        )
    inbox = Inbox(standin.data_dir)
    if args.clear:
        print(f"Deleted {inbox.clear()} messages.")
        return 0
    messages = inbox.messages(args.to)
    print(json.dumps([m.as_dict() for m in messages], indent=2) if args.json else describe(messages))
    return 0


def _delay_ms(text: str) -> float:
    """``--delay-ms``: a one-way delay the rig's proxies can hold (a bad value is a usage error, not a traceback)."""
    from workbench.local.remote_rig import MAX_ONE_WAY_DELAY_MS

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of milliseconds: {text!r}") from None
    if not 0 <= value <= MAX_ONE_WAY_DELAY_MS:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be 0..{MAX_ONE_WAY_DELAY_MS:g} ms (one way), got {text!r}")
    return value


def cmd_doctor(args: argparse.Namespace) -> int:
    from workbench.doctor import run_doctor

    return run_doctor(local_dir=args.dir)


def cmd_remote_rig(args: argparse.Namespace) -> int:
    """A stand-in for a remote project (TLS, both poolers, latency): see workbench.local.remote_rig."""
    from workbench.local import remote_rig

    folder = args.dir or (LocalStandIn().data_dir.parent / "remote-rig")
    if args.action == "stop":
        print("remote rig stopped" if remote_rig.stop_detached(folder) else "no remote rig was running")
        return 0
    if args.action == "start" and args.foreground:

        def ready(rig: remote_rig.RemoteRig) -> None:
            print("\n".join(rig.describe()), flush=True)

        remote_rig.serve(folder, args.delay_ms, ready)
        return 0
    state: dict[str, Any] | None
    if args.action == "start":
        state = remote_rig.start_detached(folder, args.delay_ms)
    else:
        state = remote_rig.read_state(folder)
    if state is None:
        print("no remote rig is running (start it with `workbench remote-rig start`)")
        return 1
    print(f"remote rig running (pid {state['pid']}), one-way delay {state['delay_ms']} ms")
    print(f"  CA file      {state['ca_file']}  (SUPABASE_DB_SSLROOTCERT for verify-full)")
    for kind, url in state["urls"].items():
        print(f"  {kind:<12} {remote_rig.masked(url)}")
    print(f"  full URLs (with the password) are in {folder / remote_rig.STATE_FILE}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Supabase Workbench")
    sub = parser.add_subparsers(dest="command", required=True)

    local = sub.add_parser("local", help="the embedded local Supabase stand-in")
    local.add_argument("action", choices=["start", "stop", "status", "reset", "inbox", "pull"])
    local.add_argument("--dir", type=Path, default=None, help="data folder (default $WORKBENCH_LOCAL_DIR)")
    local.add_argument("--json", action="store_true", help="machine-readable output")
    local.add_argument("--no-demo", action="store_true", help="do not load the demo app into a new stand-in")
    local.add_argument("--to", default=None, help="inbox: only the messages to this address")
    local.add_argument("--clear", action="store_true", help="inbox: delete every message")
    local.add_argument(
        "--project", type=Path, default=None, help="start/reset: a Supabase CLI project folder (supabase/migrations)"
    )
    local.add_argument("--db-url", default=None, help="pull: the source project (default: SUPABASE_DB_URL etc.)")
    local.add_argument("--rows", type=int, default=0, help="pull: sample rows per table (default 0: schema only)")
    local.set_defaults(func=cmd_local)

    rig = sub.add_parser("remote-rig", help="a stand-in that behaves like a remote project (TLS, poolers, latency)")
    rig.add_argument("action", choices=["start", "stop", "status"])
    rig.add_argument("--dir", type=Path, default=None, help="rig folder (default: beside the local stand-in's)")
    rig.add_argument("--delay-ms", type=_delay_ms, default=0.0, help="one-way delay added by the proxies (RTT = 2x)")
    rig.add_argument("--foreground", action="store_true", help="run in this process until Ctrl-C")
    rig.set_defaults(func=cmd_remote_rig)

    doctor = sub.add_parser("doctor", help="check settings, database, roles and local services")
    doctor.add_argument("--dir", type=Path, default=None, help="local stand-in data folder")
    doctor.set_defaults(func=cmd_doctor)

    try:
        schema_cli = importlib.import_module("workbench.schema.cli")
    except ModuleNotFoundError:
        schema_cli = None  # the models command lands with the schema package
    if schema_cli is not None:
        schema_cli.add_parser(sub)
    from workbench.policies import impact_cli

    impact_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StandInError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
