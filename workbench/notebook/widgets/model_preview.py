"""The model preview: generator options, the code as it would be written (highlighted), a diff against an
existing file, an export button that writes the file and says where, and a check button that builds the
code into a throwaway database and diffs it against the source.

Reflection happens once; toggling an option regenerates from the cached model in milliseconds. Every
action is a method (:meth:`ModelPreview.set_option`, :meth:`~ModelPreview.diff_against`,
:meth:`~ModelPreview.export`, :meth:`~ModelPreview.check`) that tests drive without a browser. Key elements
carry ``wb-models-*`` classes.
"""

from __future__ import annotations

import difflib
import html
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from workbench.schema import model as m
from workbench.schema.codegen import EXTERNAL_MODES, LAYOUTS, VALID_OPTIONS, GeneratedCode, check_options, generate

if TYPE_CHECKING:
    from workbench.schema.roundtrip import RoundTrip

MAX_HIGHLIGHT = 400_000  # characters; beyond this the code is shown plain (highlighting would stall the page)


def _cls(widget: w.Widget, *names: str) -> w.Widget:
    for name in names:
        widget.add_class(name)
    return widget


def highlight(code: str) -> str:
    """Python source as HTML with inline styles (pygments), so it needs no stylesheet."""
    if len(code) > MAX_HIGHLIGHT:
        return f"<pre>{html.escape(code)}</pre>"
    from pygments import highlight as pyg
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return pyg(code, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))


def diff_html(old: str, new: str, old_name: str, new_name: str = "generated") -> str:
    """A unified diff, coloured; says so when there is no difference."""
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name, lineterm="", n=2))
    if not lines:
        return f"<div class='wb-models-same'>No difference with {html.escape(old_name)}.</div>"
    colors = {"+": "#1b5e20", "-": "#b71c1c", "@": "#6a1b9a"}
    out = []
    for line in lines:
        color = colors.get(line[:1], "inherit")
        if line.startswith(("+++", "---")):
            color = "#333"
        out.append(f"<span style='color:{color}'>{html.escape(line)}</span>")
    return "<pre class='wb-models-diff-text' style='max-height:420px;overflow:auto'>" + "\n".join(out) + "</pre>"


def check_html(report: RoundTrip) -> str:
    """The check's outcome: the count (or the stage that failed), each difference, what was compared."""
    css = "wb-models-check-ok" if report.ok else "wb-models-check-failed"
    color = "#1b5e20" if report.ok else "#b71c1c"
    lines = [f"<div class='{css}' style='color:{color};font-weight:bold'>{html.escape(report.summary())}</div>"]
    if report.differences:
        body = "\n".join(html.escape(str(d)) for d in report.differences)
        lines.append(f"<pre class='wb-models-check-diff' style='max-height:300px;overflow:auto'>{body}</pre>")
    if report.error is None:
        lines.append(f"<div class='wb-models-check-scope' style='color:#555'>{html.escape(report.scope())}</div>")
    return "".join(lines)


class ModelPreview:
    """Preview and export SQLAlchemy models. ``widget`` is what the notebook displays."""

    def __init__(
        self,
        settings: Any = None,
        *,
        schema: str | Sequence[str] = m.DEFAULT_SCHEMA,
        tables: Sequence[str] | None = None,
        options: Iterable[str] = (),
        external: str = "standin",
        layout: str = "file",
        export: str | Path | None = None,
        db: m.Database | None = None,
    ) -> None:
        self.schemas = [schema] if isinstance(schema, str) else list(schema)
        self.settings, self.tables = settings, list(tables) if tables else None
        self.options = set(check_options(options))
        if db is None:
            if settings is None:
                raise ValueError("ModelPreview needs settings (or a reflected db): pass workbench.load_settings().")
            from workbench.notebook.bridge import run_sync
            from workbench.schema.reflect import reflect_settings

            db = run_sync(reflect_settings(settings, self.schemas, tables))
        self.db = db
        self.code: GeneratedCode | None = None
        self.generated_ms = 0.0

        self.checks = {
            name: _cls(w.Checkbox(value=name in self.options, description=name, indent=False), "wb-models-option")
            for name in sorted(VALID_OPTIONS)
        }
        for name, box in self.checks.items():
            box.add_class(f"wb-models-option-{name}")
            box.observe(lambda ch, n=name: self._apply_option(n, ch["new"]), names="value")
        self.external = _cls(
            w.Dropdown(options=EXTERNAL_MODES, value=external, description="FK targets"), "wb-models-external"
        )
        self.layout = _cls(w.ToggleButtons(options=LAYOUTS, value=layout, description="Layout"), "wb-models-layout")
        self.summary = _cls(w.HTML(), "wb-models-summary")
        self.code_view = _cls(w.HTML(layout=w.Layout(max_height="520px", overflow="auto")), "wb-models-code")
        self.compare_path = _cls(
            w.Text(placeholder="path of an existing models file", description="Compare"), "wb-models-compare-path"
        )
        self.compare_button = _cls(w.Button(description="Diff against file"), "wb-models-compare")
        self.diff_view = _cls(w.HTML(), "wb-models-diff")
        default_out = str(export) if export is not None else "models.py"
        self.export_path = _cls(w.Text(value=default_out, description="Export to"), "wb-models-export-path")
        self.export_button = _cls(
            w.Button(description="Export", button_style="primary", icon="save"), "wb-models-export"
        )
        self.status = _cls(w.HTML(), "wb-models-status")
        self.check_button = _cls(
            w.Button(
                description="Check",
                icon="check",
                tooltip="build the code into a throwaway database and diff it against the source",
            ),
            "wb-models-check",
        )
        self.check_view = _cls(w.HTML(), "wb-models-check-result")
        self.check_button.on_click(lambda _b: self.check())
        self.external.observe(lambda _ch: self.regenerate(), names="value")
        self.layout.observe(lambda _ch: self.regenerate(), names="value")
        self.compare_button.on_click(lambda _b: self.diff_against(self.compare_path.value))
        self.export_button.on_click(lambda _b: self.export())
        options_box = _cls(
            w.GridBox(list(self.checks.values()), layout=w.Layout(grid_template_columns="repeat(4, 180px)")),
            "wb-models-options",
        )
        self.widget = _cls(
            w.VBox(
                [
                    options_box,
                    w.HBox([self.external, self.layout]),
                    self.summary,
                    self.code_view,
                    w.HBox([self.compare_path, self.compare_button]),
                    self.diff_view,
                    w.HBox([self.export_path, self.export_button, self.check_button]),
                    self.status,
                    self.check_view,
                ]
            ),
            "wb-models-preview",
        )
        self.widget.controller = self  # type: ignore[attr-defined]
        self.regenerate()
        if export is not None:
            self.export(export)

    # -- actions ----------------------------------------------------------------------------------------
    def regenerate(self) -> GeneratedCode:
        """Generate with the current options and show the code."""
        started = time.perf_counter()
        self.code = generate(
            self.db,
            sorted(self.options),
            external=self.external.value,
            layout=self.layout.value,
            command=self._command(),
        )
        self.generated_ms = (time.perf_counter() - started) * 1000
        text = self.code.text
        tables = sum(len(s.tables) for s in self.db.schemas)
        classes = text.count("(Base):")
        self.summary.value = (
            f"{tables} tables and views of {html.escape(', '.join(self.schemas))} → {classes} classes, "
            f"{len(text.splitlines()):,} lines · generated in {self.generated_ms:.0f} ms"
            + "".join(f"<br>note: {html.escape(n)}" for n in self.code.notes)
        )
        self.code_view.value = highlight(text)
        if self.compare_path.value:
            self.diff_against(self.compare_path.value)
        return self.code

    def set_option(self, name: str, on: bool) -> GeneratedCode:
        """Turn one generator option on or off (unknown names are refused) and regenerate."""
        check_options([name])
        if self.checks[name].value != on:
            self.checks[name].value = on  # the checkbox's observer applies it
        else:
            self._apply_option(name, on)
        assert self.code is not None
        return self.code

    def _apply_option(self, name: str, on: bool) -> None:
        (self.options.add if on else self.options.discard)(name)
        self.regenerate()

    def set_external(self, mode: str) -> GeneratedCode:
        """What to do with FK targets outside the selection: ``standin``, ``include`` or ``plain``."""
        if mode not in EXTERNAL_MODES:
            raise ValueError(f"{mode!r} is not one of {', '.join(EXTERNAL_MODES)}.")
        if self.external.value != mode:
            self.external.value = mode  # its observer regenerates
        assert self.code is not None
        return self.code

    def set_layout(self, layout: str) -> GeneratedCode:
        """``file`` (one module) or ``package`` (one module per schema)."""
        if layout not in LAYOUTS:
            raise ValueError(f"{layout!r} is not one of {', '.join(LAYOUTS)}.")
        if self.layout.value != layout:
            self.layout.value = layout
        assert self.code is not None
        return self.code

    def diff_against(self, path: str | Path) -> str:
        """Show (and return) the diff from the file at ``path`` to the code as it would be written now."""
        assert self.code is not None
        target = Path(path).expanduser()
        if str(path) != self.compare_path.value:
            self.compare_path.value = str(path)
        if self.code.layout == "package":
            target = target / "__init__.py" if target.is_dir() else target
            new, name = self.code.files.get(target.name, ""), target.name
        else:
            new, name = self.code.text, "generated"
        if not target.is_file():
            self.diff_view.value = (
                f"<span class='wb-models-error'>No file at {html.escape(str(target.resolve()))}: "
                "export first, or give the path of an existing models file.</span>"
            )
            return ""
        self.diff_view.value = diff_html(target.read_text(encoding="utf-8"), new, str(target), name)
        return "\n".join(
            difflib.unified_diff(target.read_text(encoding="utf-8").splitlines(), new.splitlines(), lineterm="")
        )

    def export(self, path: str | Path | None = None) -> list[Path]:
        """Write the code to ``path`` (default: the path in the box) and say where, in full."""
        assert self.code is not None
        target = Path(path if path is not None else self.export_path.value).expanduser()
        if path is not None and str(path) != self.export_path.value:
            self.export_path.value = str(path)
        try:
            written = self.code.write(target)
        except (OSError, ValueError) as exc:
            self.status.value = (
                f"<span class='wb-models-error'>Could not write {html.escape(str(target))}: "
                f"{html.escape(str(exc))}</span>"
            )
            raise
        size = sum(p.stat().st_size for p in written)
        where = written[0] if len(written) == 1 else written[0].parent
        self.status.value = (
            f"<span class='wb-models-written'>Wrote {size:,} bytes to <code>{html.escape(str(where))}</code>"
            + (f" ({len(written)} files)" if len(written) > 1 else "")
            + "</span>"
        )
        return written

    def check(self, *, server_dsn: str | None = None) -> RoundTrip:
        """Export to a throwaway Supabase-like database, build it with ``create_all``, diff against the source,
        and show the result. The throwaway database lives on ``server_dsn``'s server (default: the source's,
        right for the local stand-in; pass the stand-in's DSN to check a remote project)."""
        from workbench.notebook.bridge import run_sync
        from workbench.schema.reflect import dsn_from_settings
        from workbench.schema.roundtrip import check

        if self.settings is None:
            raise ValueError("check needs the settings of the source database: ModelPreview(settings, ...).")
        dsn, _pooled = dsn_from_settings(self.settings)
        self.check_view.value = "<span class='wb-models-checking'>Checking: building into a throwaway database…</span>"
        try:
            report = run_sync(
                check(
                    dsn,
                    self.schemas,
                    server_dsn=server_dsn,
                    tables=self.tables,
                    options=sorted(self.options),
                    external=self.external.value,
                    layout=self.layout.value,
                )
            )
        except Exception as exc:
            self.check_view.value = (
                f"<span class='wb-models-error'>Check failed: {html.escape(type(exc).__name__)}: "
                f"{html.escape(str(exc).splitlines()[0] if str(exc) else '')}</span>"
            )
            raise
        self.check_view.value = check_html(report)
        return report

    def _command(self) -> str:
        parts = ["workbench models export"] + [f"--schema {s}" for s in self.schemas]
        if self.options:
            parts.append("--options " + ",".join(sorted(self.options)))
        if self.external.value != "standin":
            parts.append(f"--external {self.external.value}")
        if self.layout.value != "file":
            parts.append(f"--layout {self.layout.value}")
        return " ".join(parts)


def model_preview(
    settings: Any,
    schema: str | Sequence[str] = m.DEFAULT_SCHEMA,
    tables: Sequence[str] | None = None,
    options: Iterable[str] = (),
    export: str | Path | None = None,
    *,
    external: str = "standin",
    layout: str = "file",
) -> w.Widget:
    """The model preview widget (``widget.controller`` is its :class:`ModelPreview`). With ``export``, the
    file is written at once and the widget says where."""
    return ModelPreview(
        settings, schema=schema, tables=tables, options=options, export=export, external=external, layout=layout
    ).widget
