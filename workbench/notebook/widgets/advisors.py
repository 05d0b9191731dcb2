"""The advisors widget and ``%sbadvise``: findings grouped by level, each with a "Show fix" button that
reveals its remediation SQL. The SQL is only ever shown: review it and run it yourself (in a migration).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from workbench.policies.advisors import Lint, group_by_level
from workbench.policies.commands import advise, make_advise_parser, parse_advise_options
from workbench.policies.initplan import InitplanMeasurement

if TYPE_CHECKING:
    from workbench.notebook.session import Workbench

LEVEL_COLOURS = {"ERROR": "#c62828", "WARN": "#ef6c00", "INFO": "#1565c0"}


class _Item:
    """One finding: summary, and its fix behind a button."""

    def __init__(self, lint: Lint) -> None:
        self.lint = lint
        esc = html.escape
        self.summary = w.HTML(
            f"<div><b>{esc(lint.title)}</b> <code style='color:#666'>{esc(lint.name)}</code> "
            f"<span style='color:#666'>{esc(', '.join(lint.categories))}</span></div>"
            f"<div class='wb-advisor-detail'>{_markdown_code(lint.detail)}</div>"
            f"<div style='color:#666;font-size:90%'>{esc(lint.description)} "
            f"<a href='{esc(lint.docs_url)}' target='_blank'>docs</a></div>"
        )
        self.summary.add_class("wb-advisor-summary-text")
        self.button = w.Button(description="Show fix", icon="wrench", layout=w.Layout(width="auto"))
        self.button.add_class("wb-advisor-fix-button")
        self.fix = w.HTML(
            "<div style='color:#666'>Not applied: review this SQL and run it yourself (for example in a migration)."
            f"</div><pre class='wb-advisor-sql'>{esc(lint.remediation)}</pre>",
            layout=w.Layout(display="none"),
        )
        self.fix.add_class("wb-advisor-fix")
        self.button.on_click(lambda _b: self.toggle())
        self.widget = w.VBox(
            [self.summary, self.button, self.fix],
            layout=w.Layout(border_left=f"4px solid {LEVEL_COLOURS[lint.level]}", padding="2px 8px", margin="4px 0"),
        )
        self.widget.add_class("wb-advisor-item")
        self.widget.add_class(f"wb-advisor-{lint.level.lower()}")

    @property
    def fix_shown(self) -> bool:
        return self.fix.layout.display != "none"

    def toggle(self) -> None:
        self.show_fix(not self.fix_shown)

    def show_fix(self, show: bool = True) -> str:
        self.fix.layout.display = None if show else "none"
        self.button.description = "Hide fix" if show else "Show fix"
        return self.lint.remediation


def _markdown_code(text: str) -> str:
    """Supabase's details quote object names in backticks: show them as code."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


class AdvisorsWidget:
    """Findings grouped by level (ERROR, WARN, INFO), plus the initplan measurement when there is one."""

    def __init__(self, lints: Sequence[Lint], measurement: InitplanMeasurement | None = None) -> None:
        self.lints = list(lints)
        self.measurement = measurement
        self.items: list[_Item] = []
        groups = group_by_level(self.lints)
        counts = " · ".join(
            f"<span style='color:{LEVEL_COLOURS[level]}'>{len(found)} {level}</span>" for level, found in groups.items()
        )
        self.header = w.HTML(f"<b>Advisors</b>: {counts}")
        self.header.add_class("wb-advisor-counts")
        sections: list[w.Widget] = [self.header]
        if not self.lints:
            clean = w.HTML("<div style='color:#2e7d32'>No findings: every lint passed.</div>")
            clean.add_class("wb-advisor-clean")
            sections.append(clean)
        for level, found in groups.items():
            if not found:
                continue
            heading = w.HTML(f"<h4 style='color:{LEVEL_COLOURS[level]};margin:.6em 0 .2em'>{level} ({len(found)})</h4>")
            heading.add_class("wb-advisor-level")
            items = [_Item(lint) for lint in found]
            self.items += items
            section = w.VBox([heading, *[i.widget for i in items]])
            section.add_class(f"wb-advisor-level-{level.lower()}")
            sections.append(section)
        if measurement is not None:
            self.initplan = w.HTML(render_measurement(measurement))
            self.initplan.add_class("wb-advisor-initplan")
            sections.append(self.initplan)
        self.widget = w.VBox(sections)
        self.widget.add_class("wb-advisors")

    def item(self, lint: str, /, **metadata: Any) -> _Item:
        """The finding of ``lint`` whose metadata has these values (e.g. ``name="tasks"``)."""
        for item in self.items:
            if item.lint.name == lint and all(item.lint.metadata.get(k) == v for k, v in metadata.items()):
                return item
        raise KeyError(f"no {lint} finding with {metadata}")

    def show_fix(self, lint: str, /, **metadata: Any) -> str:
        """Reveal a finding's remediation SQL (the one-call twin of the button) and return it."""
        return self.item(lint, **metadata).show_fix()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def render_measurement(m: InitplanMeasurement) -> str:
    esc = html.escape
    return (
        "<div><b>auth_rls_initplan, measured</b>: "
        f"{esc(m.summary())}</div><table><tr>"
        f"<td style='vertical-align:top'><div>using ({esc(m.naive_policy)}): {m.naive_median:.1f} ms</div>"
        f"<pre class='wb-advisor-plan'>{esc(m.naive_plan)}</pre></td>"
        f"<td style='vertical-align:top'><div>using ({esc(m.wrapped_policy)}): {m.wrapped_median:.1f} ms</div>"
        f"<pre class='wb-advisor-plan'>{esc(m.wrapped_plan)}</pre></td></tr></table>"
    )


# -- %sbadvise -----------------------------------------------------------------------------------------
# The command's logic lives in workbench.policies.commands (shared with the CLI and plain calls).
parse_options = parse_advise_options
make_parser = make_advise_parser


def advisors_magic(wb: Workbench, line: str) -> Any:
    """``%sbadvise [--lints NAME ...] [--schemas S ...] [--level L ...] [--measure [--rows N]]``."""
    options = parse_options(line)
    if options.help:
        help_text = w.HTML(f"<pre>{html.escape(make_parser().format_help())}</pre>")
        help_text.add_class("wb-advisor-help")
        return help_text

    async def run() -> tuple[list[Lint], InitplanMeasurement | None]:  # the engine belongs to wb.run's loop
        return await advise(wb.engine(), options)

    found, measurement = wb.run(run())
    return AdvisorsWidget(found, measurement)
