"""The model preview in a real JupyterLab: ``%sbmodels`` shows highlighted SQLAlchemy code, ticking an option
changes it, Export writes the file (checked on disk: it compiles and holds the models), and a diff against it is
empty until an option changes again, and Check shows a rebuild with 0 differences. Read-only on the source
database (the check builds into a throwaway database it drops).
"""

from __future__ import annotations

import pytest
from lab import Lab, open_notebook, output_of, run_all, screenshot, wait_for_output, write_notebook
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

COMMENT = "Free-form JSON: labels, estimates, links."  # public.tasks.details has this column comment
CELLS = [
    "<!--md--># SQLAlchemy models from the database\nOptions change the code at once; Export writes it.",
    "import workbench\n%load_ext workbench\n%sbconnect",
    "%sbmodels --tables tasks projects organizations",
]


def test_model_preview_changes_with_an_option_and_exports(lab: Lab, page) -> None:  # type: ignore[no-untyped-def]
    write_notebook(lab.root_dir, "model_preview.ipynb", CELLS)
    open_notebook(page, lab, "model_preview.ipynb")
    run_all(page)

    preview = wait_for_output(page, ".wb-models-preview")
    code = preview.locator(".wb-models-code")
    expect(code).to_contain_text("class Task(Base):")
    expect(code).to_contain_text(COMMENT)
    assert code.locator("span[style*='color']").count() > 20  # highlighted, not plain text

    # Tick "nocomments": the kernel regenerates and the page shows code without the comment.
    preview.locator(".wb-models-option-nocomments input[type=checkbox]").check()
    expect(code).not_to_contain_text(COMMENT)
    expect(code).to_contain_text("class Task(Base):")

    # Export to a path relative to the notebook's folder (the server's root): the file lands there.
    target = lab.root_dir / "exported" / "demo_models.py"
    preview.locator(".wb-models-export-path input").fill("exported/demo_models.py")
    preview.locator("button.wb-models-export").click()
    written = preview.locator(".wb-models-status .wb-models-written")
    expect(written).to_contain_text("demo_models.py")
    source = target.read_text(encoding="utf-8")
    compile(source, str(target), "exec")  # the exported module is valid Python
    assert "class Task(Base):" in source and COMMENT not in source
    screenshot(page, "model_preview_exported", output_of(preview))

    # The diff against the exported file is empty; untick the option and it shows the comment coming back.
    preview.locator(".wb-models-compare-path input").fill("exported/demo_models.py")
    preview.locator("button.wb-models-compare").click()
    expect(preview.locator(".wb-models-diff .wb-models-same")).to_be_visible()
    preview.locator(".wb-models-option-nocomments input[type=checkbox]").uncheck()
    diff = preview.locator(".wb-models-diff pre.wb-models-diff-text")
    expect(diff).to_contain_text(COMMENT)
    screenshot(page, "model_preview_diff", output_of(preview))

    # Check: the kernel builds the code into a throwaway database, diffs it against the source, and the page
    # shows the outcome and what was compared.
    preview.locator("button.wb-models-check").click()
    outcome = preview.locator(".wb-models-check-result .wb-models-check-ok")
    expect(outcome).to_contain_text("workbench: 0 differences", timeout=90_000)
    expect(preview.locator(".wb-models-check-result .wb-models-check-scope")).to_contain_text("trigger")
    screenshot(page, "model_preview_check", output_of(preview))
