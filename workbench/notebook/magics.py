"""IPython magics (``%load_ext workbench``): thin parsing over :mod:`workbench.notebook.session`.

``%sbconnect`` (and ``%sblocal --project PATH``), ``%%sbquery`` / ``%sbquery``, ``%sbimpersonate``,
``%sbwhoami``, and the widget openers ``%sbstorage``, ``%sbschema``, ``%sbmodels``, ``%sbpolicies``,
``%sbadvise``, ``%sbwhy``. Errors the user can fix are shown as one short message with a hint, without a
traceback from inside the libraries.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from workbench.core.identity import Identity
from workbench.notebook import session as core

SHORT_ERRORS: tuple[type[BaseException], ...] = ()


def _short_error_types() -> tuple[type[BaseException], ...]:
    """Every error a user can fix derives from one base class (settings, SQL text, identities, ...)."""
    from workbench.core.exceptions import WorkbenchUserError

    return (WorkbenchUserError,)


def _show_short_error(shell: Any, etype: type, evalue: BaseException, tb: Any, tb_offset: Any = None) -> Any:
    """Custom exception handler: the message and hint only (``%xmode Verbose`` brings tracebacks back)."""
    if getattr(shell, "InteractiveTB", None) is not None and shell.InteractiveTB.mode == "Verbose":
        return shell.showtraceback((etype, evalue, tb), tb_offset=tb_offset)
    from workbench.core.redaction import redact

    message = redact(f"{etype.__name__}: {evalue}")
    shell._showtraceback(etype, evalue, [message])
    return None


def _connect_local_project(path: str, *, reset: bool, mode: str | None) -> core.Workbench:
    """Load (or with ``reset`` rebuild from) a project folder into the local stand-in, showing one progress
    line per file, then connect to it."""
    from workbench.local import project
    from workbench.local.settings import standin_settings
    from workbench.local.standin import LocalStandIn

    folder = project.find_project(path)
    handle = display({"text/plain": f"loading {folder.root} ..."}, raw=True, display_id=True)

    def progress(event: project.LoadEvent) -> None:
        if handle is not None:
            handle.update({"text/plain": event.describe()}, raw=True)

    standin = LocalStandIn()  # $WORKBENCH_LOCAL_DIR or ~/.workbench/local, as `%sbconnect local`
    if reset:
        report = project.reset_project(folder.root, standin, progress=progress)
    else:
        report = project.load_project(folder.root, standin, progress=progress)
    wb = core.connect(standin_settings(standin), mode=mode)
    summary = report.describe()
    if handle is not None:
        handle.update({"text/plain": summary}, raw=True)
    return wb


@magics_class
class WorkbenchMagics(Magics):
    """The workbench's magics; state lives in :func:`workbench.notebook.session.current`."""

    # -- connection ----------------------------------------------------------------------------------
    @magic_arguments()
    @argument("target", nargs="?", default=None, help="'local', 'project', or a postgresql:// URL")
    @argument("--mode", choices=["direct", "session", "transaction"], default=None)
    @argument("--project", default=None, help="local: load this Supabase CLI project folder (supabase/migrations)")
    @argument("--reset", action="store_true", help="with --project: rebuild the database from the project")
    @line_magic
    def sbconnect(self, line: str) -> Any:
        """Connect to the local stand-in (default with no project configured), the project, or a URL."""
        args = _parse(self.sbconnect, line)
        if args.project is not None or args.reset:
            if args.target not in (None, "local") or args.project is None:
                raise UsageError(
                    "--project PATH [--reset] loads a project into the local stand-in: %sbconnect local --project PATH"
                )
            wb = _connect_local_project(args.project, reset=args.reset, mode=args.mode)
        elif args.target in (None, "project"):
            wb = core.connect(mode=args.mode)
        elif args.target == "local":
            from workbench.local.settings import standin_settings

            wb = core.connect(standin_settings(), mode=args.mode)
        else:
            wb = core.connect(args.target, mode=args.mode)
        where = wb.settings.describe()
        _show(f"<span class='wb-connected'>Connected: {_esc(where)}</span>", f"Connected: {where}")
        return None

    @magic_arguments()
    @argument("--project", required=True, help="a Supabase CLI project folder (the root or its supabase/)")
    @argument("--reset", action="store_true", help="rebuild the database from the project (supabase db reset)")
    @line_magic
    def sblocal(self, line: str) -> Any:
        """``%sblocal --project PATH``: the local stand-in with the project's migrations (+ seed), connected."""
        args = _parse(self.sblocal, line)
        _connect_local_project(args.project, reset=args.reset, mode=None)
        where = f"local stand-in with project {args.project}"
        _show(f"<span class='wb-connected'>Connected: {_esc(where)}</span>", f"Connected: {where}")
        return None

    # -- queries -------------------------------------------------------------------------------------
    @magic_arguments()
    @argument("--as", dest="as_user", default=None, help="run as this user of auth.users (email or uuid)")
    @argument("--role", default=None, help="run as this database role (anon, authenticated, service_role, ...)")
    @argument("--claims", default=None, help="extra or overriding JWT claims as a JSON object")
    @argument("-o", "--out", default=None, help="store the DataFrame in this variable")
    @argument("--limit", type=int, default=None, help="fetch at most N rows")
    @argument("--write", action="store_true", help="commit (queries are read-only by default)")
    @argument("--explain", action="store_true", help="EXPLAIN ANALYZE the last statement (always rolled back)")
    @line_cell_magic
    def sbquery(self, line: str, cell: str | None = None) -> Any:
        """Run SQL as an identity; ``:name`` binds the notebook variable ``name`` as a parameter."""
        if cell is None:
            options, sql = split_line_magic(line)
        else:
            options, sql = line, cell
        args = _parse(self.sbquery, options)
        wb = core.current()
        namespace = self.shell.user_ns if self.shell is not None else {}

        async def go() -> Any:
            identity = None
            if args.as_user or args.role or args.claims:
                identity = await wb.resolve_identity(args.as_user, args.role, args.claims)
            return await wb.query_outcome(
                sql, identity=identity, params=namespace, write=args.write, limit=args.limit, explain=args.explain
            )

        outcome = wb.run(go())
        if outcome.explain is not None:
            _show(
                f"<pre class='wb-explain'>{_esc(outcome.explain)}</pre><div>{_esc(outcome.footer)}</div>",
                f"{outcome.explain}\n{outcome.footer}",
            )
            return None
        from workbench.core.query import result_frame

        frame = result_frame(outcome, wb.display_rows)
        if args.out:
            namespace[args.out] = frame
        return frame

    # -- identities ----------------------------------------------------------------------------------
    @magic_arguments()
    @argument("user", nargs="?", default=None, help="email or uuid of a user in auth.users")
    @argument("--role", default=None)
    @argument("--claims", default=None)
    @argument("--anon", action="store_true")
    @argument("--service", action="store_true", help="service_role")
    @argument("--none", action="store_true", help="stop impersonating (the connection's own role)")
    @line_magic
    def sbimpersonate(self, line: str) -> Any:
        """Set the default identity; with no arguments, open the identity picker."""
        args = _parse(self.sbimpersonate, line)
        wb = core.current()
        if not any([args.user, args.role, args.claims, args.anon, args.service, args.none]):
            from workbench.notebook.widgets.identity_picker import IdentityPicker

            return IdentityPicker(wb).widget
        if args.none:
            identity = Identity.none()
        elif args.anon:
            identity = Identity.anon()
        elif args.service:
            identity = Identity.service_role()
        else:
            identity = wb.run(wb.resolve_identity(args.user, args.role, None, base=Identity.none()))
        identity = identity.with_claims(args.claims)
        wb.impersonate(identity)
        who = identity.describe()
        _show(f"<span class='wb-identity'>Now running as <b>{_esc(who)}</b></span>", f"Now running as {who}")
        return None

    @line_magic
    def sbwhoami(self, line: str) -> Any:
        """Show the current identity and what the database sees for it (auth.uid(), auth.jwt())."""
        wb = core.current()
        seen = wb.run(wb.whoami())
        claims = seen.get("claims")
        pretty = json.dumps(claims, indent=2, default=str) if claims is not None else "(no JWT claims)"
        summary = f"{seen['identity']} · database role {seen['db_role']} · auth.uid() {seen['uid']}"
        _show(
            "<div class='wb-whoami'>"
            f"<b>{_esc(seen['identity'])}</b> · database role <code>{_esc(str(seen['db_role']))}</code>"
            f" · auth.uid() <code>{_esc(str(seen['uid']))}</code>"
            f"<pre>{_esc(pretty)}</pre></div>",
            f"{summary}\n{pretty}",
        )
        return None

    @line_magic
    def sbinbox(self, line: str) -> Any:
        """Show the local stand-in's inbox (``%sbinbox [ADDRESS]``); returns the messages as a list."""
        from workbench.local.inbox import Inbox, describe

        settings = core.current().settings
        if settings.local_dir is None:
            raise UsageError("%sbinbox reads the local stand-in's inbox; this notebook is connected elsewhere.")
        messages = Inbox(settings.local_dir).messages(line.strip() or None)
        text = describe(messages)
        _show(f"<pre class='wb-inbox'>{_esc(text)}</pre>", text)
        return messages

    # -- widget openers (modules land independently; each says what is missing) ----------------------
    @line_magic
    def sbstorage(self, line: str) -> Any:
        """Open the storage browser (as the current identity)."""
        module = _optional("workbench.notebook.widgets.storage_browser", "%sbstorage")
        wb = core.current()
        return module.open_storage_browser(wb.settings, identity=wb.default_identity)

    @line_magic
    def sbschema(self, line: str) -> Any:
        """Open the schema browser."""
        module = _optional("workbench.notebook.widgets.schema_browser", "%sbschema")
        return module.schema_browser(core.current().settings)

    @magic_arguments()
    @argument("--schema", default="public")
    @argument("--tables", nargs="*", default=None)
    @argument("--options", nargs="*", default=None)
    @argument("--export", default=None, help="write the models to this path")
    @line_magic
    def sbmodels(self, line: str) -> Any:
        """Preview (and export) SQLAlchemy 2.0 models generated from the database."""
        args = _parse(self.sbmodels, line)
        module = _optional("workbench.notebook.widgets.model_preview", "%sbmodels")
        return module.model_preview(
            core.current().settings,
            schema=args.schema,
            tables=args.tables,
            options=args.options or (),
            export=args.export,
        )

    @line_magic
    def sbpolicies(self, line: str) -> Any:
        """The RLS policy matrix: what each identity may do to each table."""
        words = line.split()
        if "--migration" in words and not {"-h", "--help"} & set(words):  # before / after a migration
            impact = _optional("workbench.notebook.widgets.policy_impact", "%sbpolicies")
            return impact.policy_impact_magic(core.current(), line)
        module = _optional("workbench.notebook.widgets.policy_matrix", "%sbpolicies")
        return module.policy_matrix_magic(core.current(), line)

    @line_magic
    def sbadvise(self, line: str) -> Any:
        """Database advisors (Supabase's lints), grouped by level."""
        module = _optional("workbench.notebook.widgets.advisors", "%sbadvise")
        return module.advisors_magic(core.current(), line)

    @line_cell_magic
    def sbwhy(self, line: str, cell: str | None = None) -> Any:
        """Why an identity sees (or may write) each row: ``%sbwhy --as USER TABLE [--where ...]``, or
        ``%%sbwhy --as USER`` with an INSERT/UPDATE/DELETE in the cell."""
        module = _optional("workbench.notebook.widgets.why", "%sbwhy")
        namespace = self.shell.user_ns if self.shell is not None else {}
        return module.why_magic(core.current(), line, cell, namespace)


def _optional(module_name: str, magic: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        from workbench.core.query import QueryUsageError

        raise QueryUsageError(f"{magic} is not available in this version of the workbench ({module_name}).") from None


_VALUE_OPTIONS = ("--as", "--role", "--claims", "-o", "--out", "--limit")
_FLAG_OPTIONS = ("--write", "--explain")


def split_line_magic(line: str) -> tuple[str, str]:
    """Line ``%sbquery``: leading options, then the SQL verbatim (never shell-split: it may hold quotes)."""
    pos, n = 0, len(line)
    options: list[str] = []
    while True:
        while pos < n and line[pos].isspace():
            pos += 1
        word_end = pos
        while word_end < n and not line[word_end].isspace():
            word_end += 1
        word = line[pos:word_end]
        if word in _FLAG_OPTIONS:
            options.append(word)
            pos = word_end
            continue
        if word not in _VALUE_OPTIONS:
            return " ".join(options), line[pos:].strip()
        start = word_end
        while start < n and line[start].isspace():
            start += 1
        if start < n and line[start] in "'\"":
            close = line.find(line[start], start + 1)
            if close == -1:
                raise UsageError(f"{word}: the quoted value has no closing {line[start]}")
            value_end = close + 1
        else:
            value_end = start
            while value_end < n and not line[value_end].isspace():
                value_end += 1
        options += [word, line[start:value_end]]
        pos = value_end


def _parse(magic: Any, line: str) -> Any:
    """``parse_argstring`` keeps the quotes around values (it splits non-POSIX): drop matching ones."""
    args = parse_argstring(magic, line)
    for key, value in vars(args).items():
        if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            setattr(args, key, value[1:-1])
    return args


def _show(html_text: str, plain: str) -> None:
    """Display HTML in Jupyter with a plain-text twin for terminals and logs."""
    display({"text/html": html_text, "text/plain": plain}, raw=True)


def _esc(text: str) -> str:
    import html

    return html.escape(text)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext workbench``: register the magics and the short error display."""
    ipython.register_magics(WorkbenchMagics)
    ipython.set_custom_exc(_short_error_types(), _show_short_error)
