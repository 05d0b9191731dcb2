"""The storage browser in a real JupyterLab: list a bucket, open folders, preview an image and a CSV, upload a file
and see it listed, then "view as" a user and see only what the storage policies let them list.

The test uploads, so the notebook works on its own stand-in (the session's is shared and must stay unchanged):
its first cell points ``WORKBENCH_LOCAL_DIR`` there before ``%sbconnect``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lab import Lab, open_notebook, output_of, run_all, screenshot, wait_for_output, write_notebook
from playwright.sync_api import expect

from workbench.local.standin import LocalStandIn

pytestmark = pytest.mark.browser

ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"
UPLOADED = b"uploaded from a real browser\n"


@pytest.fixture()
def own_standin(tmp_path: Path) -> Iterator[LocalStandIn]:
    """A stand-in this test may change (uploads), deleted afterwards."""
    instance = LocalStandIn(tmp_path / "storage-local")
    instance.start()
    yield instance
    instance.destroy()


def cells(local_dir: Path) -> list[str]:
    return [
        "<!--md--># Storage browser\nBuckets, folders, previews and uploads; *View as* applies the storage policies.",
        f"import os\nos.environ['WORKBENCH_LOCAL_DIR'] = {str(local_dir)!r}\n%load_ext workbench\n%sbconnect",
        "%sbstorage",
    ]


def test_storage_browser_lists_previews_uploads_and_views_as_a_user(  # type: ignore[no-untyped-def]
    lab: Lab, page, own_standin: LocalStandIn
) -> None:
    write_notebook(lab.root_dir, "storage_browser.ipynb", cells(own_standin.data_dir))
    open_notebook(page, lab, "storage_browser.ipynb")
    run_all(page)

    browser = wait_for_output(page, ".wb-storage-browser")
    rows = browser.locator(".wb-storage-rows")
    status = browser.locator(".wb-storage-status")

    # The public avatars bucket: its image previews inline.
    browser.locator(".wb-storage-bucket select").select_option("avatars")
    rows.locator("button.wb-storage-name", has_text="alice.png").click()
    image = browser.locator("img.wb-storage-preview-image")
    image.wait_for()
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") > 0  # the bytes decoded as a real image
    screenshot(page, "storage_browser_image_preview", output_of(browser))

    # The private documents bucket, as admin: a folder per user; open Alice's, then reports/, and preview the CSV.
    browser.locator(".wb-storage-bucket select").select_option("documents")
    rows.locator("button.wb-storage-name", has_text=f"{BOB}/").wait_for()
    rows.locator("button.wb-storage-name", has_text=f"{ALICE}/").click()
    crumbs = browser.locator(".wb-storage-breadcrumbs")
    crumbs.locator("button.wb-storage-crumb", has_text=ALICE).wait_for()
    rows.locator("button.wb-storage-name", has_text="notes.txt").wait_for()
    rows.locator("button.wb-storage-name", has_text="reports/").click()
    crumbs.locator("button.wb-storage-crumb", has_text="reports").wait_for()
    rows.locator("button.wb-storage-name", has_text="tasks.csv").click()
    table = browser.locator(".wb-storage-preview-table table")
    table.wait_for()
    assert table.locator("tr").count() >= 2  # a header and at least one row of the CSV

    # Upload through the real file chooser (the Upload button opens it) into the open folder.
    with page.expect_file_chooser() as chooser:
        browser.locator("button.wb-storage-upload").click()
    chooser.value.set_files({"name": "hello.txt", "mimeType": "text/plain", "buffer": UPLOADED})
    rows.locator("button.wb-storage-name", has_text="hello.txt").wait_for()
    expect(status.locator(".wb-storage-ok")).to_contain_text("Uploaded 1 file")
    stored = own_standin.storage_dir
    assert any(p.is_file() and p.read_bytes() == UPLOADED for p in stored.rglob("*"))  # bytes on disk
    screenshot(page, "storage_browser_uploaded", output_of(browser))

    # View as Bob from the bucket root: the folder policy lets him list only his own folder.
    crumbs.locator("button.wb-storage-crumb", has_text="documents").click()
    rows.locator("button.wb-storage-name", has_text=f"{ALICE}/").wait_for()
    browser.locator(".wb-storage-identity select").select_option(label="bob@example.com")
    expect(rows.locator("button.wb-storage-name", has_text=f"{ALICE}/")).to_have_count(0)
    expect(rows.locator("button.wb-storage-name", has_text=f"{BOB}/")).to_have_count(1)
    expect(status).to_contain_text("bob@example.com")
    screenshot(page, "storage_browser_view_as_bob", output_of(browser))
