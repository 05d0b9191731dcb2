"""The storage browser driven through its own widgets (clicks, values) against the local stand-in."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import ipywidgets as w
import pytest

from workbench import storage as st
from workbench.core.identity import Identity
from workbench.core.settings import Settings
from workbench.local.demo import DEMO_DIR
from workbench.local.standin import LocalStandIn
from workbench.notebook.widgets.storage_browser import StorageBrowser, open_storage_browser

NOW = datetime.now(UTC)
ALICE = "11111111-1111-4111-8111-111111111111"
BOB = "22222222-2222-4222-8222-222222222222"


def walk(widget: Any) -> Iterator[Any]:
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def find(root: Any, css: str) -> list[Any]:
    return [x for x in walk(root) if css in getattr(x, "_dom_classes", ())]


def row_button(browser: StorageBrowser, name: str) -> w.Button:
    for button in find(browser.widget, "wb-storage-name"):
        if button.description.rstrip("/") == name:
            return button
    raise AssertionError(f"no row named {name!r} in {browser.names()}")


def row_checkbox(browser: StorageBrowser, name: str) -> w.Checkbox:
    for row in find(browser.widget, "wb-storage-row"):
        if row.children[1].description.rstrip("/") == name:
            return row.children[0]
    raise AssertionError(f"no row named {name!r}")


def status(browser: StorageBrowser) -> str:
    return str(browser.status.value)


@pytest.fixture
async def scratch(settings: Settings) -> AsyncIterator[str]:
    """A bucket of this test's own (made and removed with the admin client on the test's loop)."""
    admin = await st.admin_client(settings)
    name = f"t-{uuid.uuid4().hex[:12]}"
    await admin.storage.create_bucket(name)
    yield name
    await admin.storage.empty_bucket(name)
    await admin.storage.delete_bucket(name)
    await admin.aclose()


@pytest.fixture
def browser(settings: Settings) -> StorageBrowser:
    return StorageBrowser(settings, page_size=50)


def test_opens_as_admin_with_targetable_parts(browser: StorageBrowser, settings: Settings) -> None:
    assert {"avatars", "documents"} <= set(browser.bucket_picker.options)
    assert browser.client is not None and browser.client.role == "service_role"
    assert browser.bucket == browser.bucket_picker.value
    for css in (
        "wb-storage-browser",
        "wb-storage-bucket",
        "wb-storage-identity",
        "wb-storage-breadcrumbs",
        "wb-storage-search",
        "wb-storage-sort",
        "wb-storage-listing",
        "wb-storage-upload",
        "wb-storage-progress",
        "wb-storage-download",
        "wb-storage-expiry",
        "wb-storage-sign",
        "wb-storage-signed-url",
        "wb-storage-target",
        "wb-storage-move",
        "wb-storage-delete",
        "wb-storage-confirm",
        "wb-storage-status",
        "wb-storage-preview",
        "wb-storage-prev",
        "wb-storage-next",
    ):
        assert find(browser.widget, css), css
    labels = [label for label, _ in browser.identity_picker.options]
    assert labels[:2] == ["admin (service role)", "anon"]
    assert {"alice@example.com", "bob@example.com"} <= set(labels)
    assert settings.service_role_key is not None
    assert settings.service_role_key.get_secret_value() not in status(browser)


def test_folders_breadcrumbs_and_previews(browser: StorageBrowser) -> None:
    browser.bucket_picker.value = "documents"
    assert browser.names() == [ALICE, BOB]
    row_button(browser, ALICE).click()
    assert browser.folder == ALICE
    assert browser.names() == ["reports", "notes.txt"]
    assert [c.description for c in find(browser.widget, "wb-storage-crumb")] == ["documents", ALICE]
    row_button(browser, "reports").click()
    assert browser.names() == ["tasks.csv"]
    row_button(browser, "tasks.csv").click()
    assert browser.preview is not None and browser.preview.kind == "csv"
    table = find(browser.widget, "wb-storage-preview-table")[0].value
    header = (DEMO_DIR / "files" / "tasks.csv").read_text().splitlines()[0].split(",")
    assert all(f"<th>{h}</th>" in table for h in header)
    find(browser.widget, "wb-storage-crumb")[1].click()  # back to alice's folder
    assert browser.folder == ALICE
    row_button(browser, "notes.txt").click()
    assert "Alice&#x27;s notes" in find(browser.widget, "wb-storage-preview-text")[0].value
    browser.bucket_picker.value = "avatars"
    row_button(browser, "alice.png").click()
    image = find(browser.widget, "wb-storage-preview-image")[0]
    assert image.value == (DEMO_DIR / "files" / "avatar.png").read_bytes() and image.format == "png"
    assert browser.selected == ["alice.png"]


def test_view_as_shows_what_policies_allow(browser: StorageBrowser) -> None:
    browser.bucket_picker.value = "documents"
    browser.show(f"{ALICE}/notes.txt")  # fetched as admin...
    assert browser.preview is not None and find(browser.widget, "wb-storage-preview-text")
    browser.identity_picker.value = f"user:{BOB}"
    assert browser.preview is None and not find(browser.widget, "wb-storage-preview-text")  # ...gone for Bob
    assert browser.client is not None and browser.client.label == "bob@example.com"
    assert browser.names() == [BOB]
    assert "Viewing as bob@example.com" in status(browser)
    assert browser.show(f"{ALICE}/notes.txt") is None
    assert "not found for bob@example.com" in status(browser) and "wb-storage-error" in status(browser)
    browser.identity_picker.value = "anon"
    assert browser.names() == []
    assert find(browser.widget, "wb-storage-empty")
    browser.identity_picker.value = "admin"
    assert browser.names() == [ALICE, BOB]


def test_upload_with_progress_then_listed(browser: StorageBrowser, scratch: str) -> None:
    browser.load_buckets()
    browser.bucket_picker.value = scratch
    assert browser.names() == []
    seen: list[int] = []
    browser.progress.observe(lambda c: seen.append(int(c["new"])), names="value")
    payload = [
        {"name": "a.txt", "type": "text/plain", "size": 5, "content": memoryview(b"hello"), "last_modified": NOW},
        {"name": "b.bin", "type": "", "size": 200_000, "content": memoryview(b"\1" * 200_000), "last_modified": NOW},
    ]
    browser.uploader.value = tuple(payload)  # what the browser's file picker sends
    assert browser.names() == ["a.txt", "b.bin"]
    assert browser.uploader.value == ()
    assert "Uploaded 2 file(s)" in status(browser)
    assert browser.progress.max == 200_005 and seen[-1] == 200_005 and len(seen) > 2
    browser.uploader.value = (
        {"name": "a.txt", "type": "text/plain", "size": 1, "content": memoryview(b"x"), "last_modified": NOW},
    )
    assert "already exists" in status(browser) and "upsert" in status(browser)
    browser.upsert_box.value = True
    browser.uploader.value = (
        {"name": "a.txt", "type": "text/plain", "size": 1, "content": memoryview(b"x"), "last_modified": NOW},
    )
    row_button(browser, "a.txt").click()
    assert browser.preview is not None and browser.preview.text == "x"


def test_upload_refused_by_policy(browser: StorageBrowser) -> None:
    browser.bucket_picker.value = "documents"
    browser.identity_picker.value = f"user:{BOB}"
    browser.open_folder(ALICE)  # bob may type alice's folder, but may not write there
    results = browser.upload_files([("intruder.txt", b"x", "text/plain")])
    assert [r.ok for r in results] == [False]
    assert "bob@example.com may not upload" in status(browser)


def test_search_sort_and_paging(browser: StorageBrowser, settings: Settings, scratch: str) -> None:
    browser.load_buckets()
    browser.select_bucket(scratch)
    browser.upload_files(
        [(f"item-{i}.txt", str(i).encode(), "text/plain") for i in range(5)] + [("other.txt", b"o", None)]
    )
    browser.page_size_picker.value = 25
    browser.search_box.value = "item"
    assert browser.names() == [f"item-{i}.txt" for i in range(5)]
    browser.search_box.value = ""
    names_header = find(browser.widget, "wb-storage-sort-header")[0]
    names_header.click()  # name, descending
    assert browser.names()[0] == "other.txt" and browser.order == "desc"
    browser.order_picker.value = "asc"
    browser.limit = 2
    browser.refresh()
    assert browser.names() == ["item-0.txt", "item-1.txt"] and browser.prev_button.disabled
    browser.next_button.click()
    assert browser.names() == ["item-2.txt", "item-3.txt"] and browser.page_label.value.startswith("3–4")
    browser.next_button.click()
    assert browser.names() == ["item-4.txt", "other.txt"] and browser.next_button.disabled
    browser.prev_button.click()
    assert browser.names() == ["item-2.txt", "item-3.txt"]
    browser.sort_picker.value = "created_at"
    assert browser.sort == "created_at" and browser.offset == 0


def test_download_sign_and_rename(browser: StorageBrowser, scratch: str) -> None:
    browser.load_buckets()
    browser.select_bucket(scratch)
    browser.upload_files([("report.txt", b"quarterly", "text/plain")])
    assert browser.download_selected() is None and "Select one file" in status(browser)
    row_button(browser, "report.txt").click()
    browser.download_button.click()
    assert base64.b64encode(b"quarterly").decode() in browser.download_link.value
    browser.expiry_picker.value = 60
    browser.sign_button.click()
    url = browser.signed_url_box.value
    assert browser.signed_url_box.layout.display is None
    assert httpx.get(url).content == b"quarterly"
    assert "valid 60 s" in status(browser)
    browser.target_box.value = "renamed.txt"
    browser.move_button.click()
    assert browser.names() == ["renamed.txt"]
    row_button(browser, "renamed.txt").click()
    browser.target_box.value = "archive/2024/renamed.txt"
    browser.move_button.click()
    assert browser.names() == ["archive"]
    row_button(browser, "archive").click()
    row_button(browser, "2024").click()
    assert browser.names() == ["renamed.txt"]


def test_delete_needs_confirmation(browser: StorageBrowser, scratch: str) -> None:
    browser.load_buckets()
    browser.select_bucket(scratch)
    browser.upload_files([("keep.txt", b"k", None), ("drop1.txt", b"1", None), ("drop2.txt", b"2", None)])
    browser.delete_button.click()
    assert "Tick the files" in status(browser)
    row_checkbox(browser, "drop1.txt").value = True
    row_checkbox(browser, "drop2.txt").value = True
    browser.delete_button.click()
    assert browser.confirm_box.layout.display is None and "Delete 2 file(s)" in browser.confirm_text.value
    browser.cancel_button.click()
    assert browser.confirm_box.layout.display == "none" and browser.names() == ["drop1.txt", "drop2.txt", "keep.txt"]
    browser.delete_button.click()
    browser.confirm_button.click()
    assert browser.names() == ["keep.txt"] and "Deleted 2 file(s)" in status(browser)


def test_delete_refused_by_policy_is_reported(browser: StorageBrowser) -> None:
    browser.bucket_picker.value = "documents"
    browser.identity_picker.value = f"user:{ALICE}"
    browser.open_folder(ALICE)
    row_checkbox(browser, "notes.txt").value = True
    # bob may not delete alice's file: switch identity with the selection kept in the same folder
    browser.identity_picker.value = f"user:{BOB}"
    browser.selected = [f"{ALICE}/notes.txt"]
    browser.request_delete()
    result = browser.confirm_delete()
    assert result is not None and result.deleted == [] and result.refused == [f"{ALICE}/notes.txt"]
    assert "no delete policy lets bob@example.com" in status(browser)


def test_open_storage_browser_as_current_identity(settings: Settings, standin: LocalStandIn) -> None:
    alice = StorageBrowser(settings, load_users=False).runner.run(st.identity_for_user(settings, "alice@example.com"))
    view = open_storage_browser(settings, identity=alice)
    browser = view.browser
    assert isinstance(view, w.VBox) and "wb-storage-browser" in view._dom_classes
    assert browser.identity_picker.value == "current"
    assert browser.client.label == "alice@example.com"
    browser.select_bucket("documents")
    assert browser.names() == [ALICE]
    none = open_storage_browser(settings, identity=Identity.none()).browser
    assert none.client.role == "service_role"
