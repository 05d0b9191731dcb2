"""The model preview, driven from Python: options, highlighting, diff against a file, export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from workbench.notebook.widgets.model_preview import ModelPreview, diff_html, highlight, model_preview
from workbench.schema.codegen import CodegenError


def test_options_change_the_code(settings: Any) -> None:
    preview = ModelPreview(settings)
    assert preview.code is not None and "Index(" in preview.code.text
    assert "<span" in preview.code_view.value and "class" in preview.code_view.value  # highlighted
    assert "6 tables and views of public" in preview.summary.value
    preview.checks["noindexes"].value = True  # as a click would
    assert "Index(" not in preview.code.text
    assert "--options noindexes" in preview.code.text
    preview.set_option("noindexes", False)
    assert preview.checks["noindexes"].value is False and "Index(" in preview.code.text
    with pytest.raises(CodegenError, match="Unrecognized option"):
        preview.set_option("nosuch", True)
    preview.set_external("include")
    assert "email: Mapped[str | None]" in preview.code.text  # auth.users in full
    preview.set_layout("package")
    assert preview.code.layout == "package" and "# ---- public.py ----" in preview.code.text


def test_export_writes_the_file_and_says_where(settings: Any, tmp_path: Path) -> None:
    target = tmp_path / "app" / "models.py"
    widget = model_preview(settings, schema="public", tables=["tasks", "projects"], export=target)
    preview: ModelPreview = widget.controller
    assert target.read_text() == preview.code.text  # type: ignore[union-attr]
    assert f"to <code>{target}</code>" in preview.status.value
    assert "class Task(Base)" in target.read_text() and "class Profile(" not in target.read_text()


def test_diff_against_an_existing_file(settings: Any, tmp_path: Path) -> None:
    preview = ModelPreview(settings)
    target = tmp_path / "models.py"
    preview.export(target)
    assert preview.diff_against(target) == ""
    assert "No difference" in preview.diff_view.value
    preview.set_option("nocomments", True)  # the compare path is kept: the diff follows the options
    assert "comment=" in preview.diff_view.value and "wb-models-diff-text" in preview.diff_view.value
    assert '-    __table_args__ = {"comment": "Tenants' in preview.diff_against(target)
    missing = preview.diff_against(tmp_path / "nope.py")
    assert missing == "" and "No file at" in preview.diff_view.value


def test_export_failure_is_reported(settings: Any, tmp_path: Path) -> None:
    preview = ModelPreview(settings, layout="package")
    with pytest.raises(ValueError, match="pass a folder"):
        preview.export(tmp_path / "models.py")
    assert "Could not write" in preview.status.value


def test_plain_helpers() -> None:
    assert "<span" in highlight("x = 1")
    assert "No difference" in diff_html("a\n", "a\n", "old.py")
    assert "#b71c1c" in diff_html("a\n", "b\n", "old.py")
    assert "&lt;b&gt;" in diff_html("<b>\n", "c\n", "old.py")


def test_css_classes_for_browser_tests(settings: Any) -> None:
    preview = ModelPreview(settings)

    def classes(widget: Any) -> set[str]:
        out = set(widget._dom_classes)
        for child in getattr(widget, "children", ()):
            out |= classes(child)
        return out

    assert {
        "wb-models-preview",
        "wb-models-options",
        "wb-models-option",
        "wb-models-option-noindexes",
        "wb-models-external",
        "wb-models-layout",
        "wb-models-code",
        "wb-models-compare-path",
        "wb-models-compare",
        "wb-models-diff",
        "wb-models-export-path",
        "wb-models-export",
        "wb-models-status",
        "wb-models-summary",
    } <= classes(preview.widget)


def test_check_builds_diffs_and_shows_the_result(settings: Any) -> None:
    preview = ModelPreview(settings)
    preview.check_button.click()  # as a click in the browser would
    assert "wb-models-check-ok" in preview.check_view.value
    assert "workbench: 0 differences" in preview.check_view.value and "never compared" in preview.check_view.value
    preview.set_option("norls", True)
    report = preview.check()
    assert not report.ok and {"rls", "policy"} == set(report.counts())
    assert "wb-models-check-failed" in preview.check_view.value and "[policy]: missing" in preview.check_view.value
