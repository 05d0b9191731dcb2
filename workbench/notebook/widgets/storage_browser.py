"""The storage browser: buckets, folders, previews, uploads, signed URLs, moves and deletes, as someone.

Thin glue over :mod:`workbench.storage`: every button calls one of its functions on the workbench's
background loop, and every action is also a method here (tests drive them without a browser). "View as"
switches the identity the requests carry, so the listing shows what storage policies let it see; the
bucket picker lists buckets with the service key when there is one (users rarely may list buckets).

Key elements carry ``wb-storage-*`` CSS classes so browser tests can find them.
"""

from __future__ import annotations

import base64
import contextlib
import html
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import ipywidgets as w

from workbench import storage as st
from workbench.core.errors import redact
from workbench.core.identity import Identity
from workbench.core.settings import Settings
from workbench.notebook.bridge import LoopThread, shared_loop

T = TypeVar("T")

EXPIRIES = [("1 minute", 60), ("1 hour", 3600), ("1 day", 86400), ("1 week", 7 * 86400)]
PAGE_SIZES = [25, 50, 100, 200]
SORTS = [("Name", "name"), ("Updated", "updated_at"), ("Created", "created_at")]
ADMIN, ANON, CURRENT = "admin", "anon", "current"
DOWNLOAD_LINK_LIMIT = 10 * 1024 * 1024
TEXT_SHOWN = 200_000


def _cls(widget: w.Widget, *names: str) -> w.Widget:
    for name in names:
        widget.add_class(name)
    return widget


class StorageBrowser:
    """Browse Supabase Storage as an identity. ``widget`` is what the notebook displays."""

    def __init__(
        self,
        settings: Settings,
        identity: Identity | None = None,
        *,
        runner: LoopThread | None = None,
        page_size: int = 50,
        load_users: bool = True,
    ) -> None:
        self.settings = settings
        self.runner = runner or shared_loop()
        self.bucket: str | None = None
        self.folder = ""
        self.offset = 0
        self.limit = page_size
        self.sort = "name"
        self.order = "asc"
        self.search_text = ""
        self.listing: st.Listing | None = None
        self.selected: list[str] = []
        self.preview: st.Preview | None = None
        self.client: st.StorageClient | None = None
        self._admin: st.StorageClient | None = None
        self._choices: dict[str, Identity | None] = {ADMIN: None, ANON: Identity.anon()}
        self._muted = 0
        self._build()
        self._load_identities(identity, load_users)
        self.load_buckets()

    # -- layout --------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.bucket_picker = _cls(w.Dropdown(description="Bucket", options=[]), "wb-storage-bucket")
        self.identity_picker = _cls(w.Dropdown(description="View as", options=[]), "wb-storage-identity")
        self.refresh_button = _cls(w.Button(description="Refresh", icon="refresh"), "wb-storage-refresh")
        self.breadcrumbs = _cls(w.HBox([]), "wb-storage-breadcrumbs")
        self.search_box = _cls(
            w.Text(placeholder="name starts with…", description="Search", continuous_update=False),
            "wb-storage-search",
        )
        self.sort_picker = _cls(w.Dropdown(options=SORTS, value="name", description="Sort"), "wb-storage-sort")
        self.order_picker = _cls(
            w.ToggleButtons(options=[("↑", "asc"), ("↓", "desc")], value="asc", style={"button_width": "32px"}),
            "wb-storage-order",
        )
        self.page_size_picker = _cls(
            w.Dropdown(
                options=PAGE_SIZES if self.limit in PAGE_SIZES else [*PAGE_SIZES, self.limit],
                value=self.limit,
                description="Per page",
                layout=w.Layout(width="160px"),
            ),
            "wb-storage-page-size",
        )
        self.rows = _cls(w.VBox([]), "wb-storage-rows")
        header = _cls(
            w.HBox(
                [
                    w.Label("", layout=w.Layout(width="28px")),
                    self._header_button("Name", "name", "320px"),
                    w.Label("Size", layout=w.Layout(width="90px")),
                    w.Label("Type", layout=w.Layout(width="170px")),
                    self._header_button("Updated", "updated_at", "150px"),
                ]
            ),
            "wb-storage-header",
        )
        self.listing_box = _cls(w.VBox([header, self.rows]), "wb-storage-listing")
        self.prev_button = _cls(w.Button(description="◀ Prev", layout=w.Layout(width="80px")), "wb-storage-prev")
        self.next_button = _cls(w.Button(description="Next ▶", layout=w.Layout(width="80px")), "wb-storage-next")
        self.page_label = _cls(w.Label(""), "wb-storage-page")
        self.uploader = _cls(w.FileUpload(multiple=True, description="Upload"), "wb-storage-upload")
        self.upsert_box = _cls(
            w.Checkbox(value=False, description="Replace existing", indent=False), "wb-storage-upsert"
        )
        self.download_button = _cls(w.Button(description="Download", icon="download"), "wb-storage-download")
        self.expiry_picker = _cls(
            w.Dropdown(options=EXPIRIES, value=3600, description="Expires", layout=w.Layout(width="200px")),
            "wb-storage-expiry",
        )
        self.sign_button = _cls(w.Button(description="Signed URL", icon="link"), "wb-storage-sign")
        self.target_box = _cls(
            w.Text(placeholder="new name, or folder/path/name", description="Move to"), "wb-storage-target"
        )
        self.move_button = _cls(w.Button(description="Rename / move"), "wb-storage-move")
        self.delete_button = _cls(
            w.Button(description="Delete", icon="trash", button_style="danger"), "wb-storage-delete"
        )
        self.confirm_text = _cls(w.HTML(""), "wb-storage-confirm-text")
        self.confirm_button = _cls(
            w.Button(description="Yes, delete", button_style="danger"), "wb-storage-confirm-delete"
        )
        self.cancel_button = _cls(w.Button(description="Cancel"), "wb-storage-cancel-delete")
        self.confirm_box = _cls(
            w.HBox([self.confirm_text, self.confirm_button, self.cancel_button]), "wb-storage-confirm"
        )
        self.confirm_box.layout.display = "none"
        self.progress = _cls(
            w.IntProgress(value=0, min=0, max=1, description="Upload", bar_style="info"), "wb-storage-progress"
        )
        self.progress.layout.visibility = "hidden"
        self.status = _cls(w.HTML(""), "wb-storage-status")
        self.signed_url_box = _cls(
            w.Text(value="", description="URL", layout=w.Layout(width="95%")), "wb-storage-signed-url"
        )
        self.signed_url_box.layout.display = "none"
        self.download_link = _cls(w.HTML(""), "wb-storage-download-link")
        self.preview_box = _cls(w.VBox([]), "wb-storage-preview")
        self.widget = _cls(
            w.VBox(
                [
                    _cls(w.HBox([self.bucket_picker, self.identity_picker, self.refresh_button]), "wb-storage-toolbar"),
                    self.breadcrumbs,
                    _cls(
                        w.HBox([self.search_box, self.sort_picker, self.order_picker, self.page_size_picker]),
                        "wb-storage-filters",
                    ),
                    self.listing_box,
                    _cls(w.HBox([self.prev_button, self.page_label, self.next_button]), "wb-storage-pager"),
                    _cls(w.HBox([self.uploader, self.upsert_box, self.progress]), "wb-storage-upload-bar"),
                    _cls(
                        w.HBox(
                            [
                                self.download_button,
                                self.expiry_picker,
                                self.sign_button,
                                self.target_box,
                                self.move_button,
                                self.delete_button,
                            ]
                        ),
                        "wb-storage-actions",
                    ),
                    self.confirm_box,
                    self.status,
                    self.signed_url_box,
                    self.download_link,
                    self.preview_box,
                ]
            ),
            "wb-storage-browser",
        )
        self.widget.browser = self  # keep the controller alive with its view

        self._observe(self.bucket_picker, lambda v: self.select_bucket(str(v)) if v and v != self.bucket else None)
        self._observe(self.identity_picker, lambda v: self.view_as(str(v)) if v else None)
        self.refresh_button.on_click(lambda _b: self.refresh())
        self._observe(self.search_box, lambda v: self.search(str(v)))
        self._observe(self.sort_picker, lambda v: self.sort_by(str(v), self.order))
        self._observe(self.order_picker, lambda v: self.sort_by(self.sort, str(v)))
        self._observe(self.page_size_picker, lambda v: self.set_page_size(int(v)))
        self.prev_button.on_click(lambda _b: self.prev_page())
        self.next_button.on_click(lambda _b: self.next_page())
        self.uploader.observe(self._on_upload, names="value")
        self.download_button.on_click(lambda _b: self.download_selected())
        self.sign_button.on_click(lambda _b: self.sign_selected())
        self.move_button.on_click(lambda _b: self.move_selected(self.target_box.value))
        self.delete_button.on_click(lambda _b: self.request_delete())
        self.confirm_button.on_click(lambda _b: self.confirm_delete())
        self.cancel_button.on_click(lambda _b: self.cancel_delete())

    def _observe(self, widget: w.Widget, action: Any) -> None:
        """Call ``action(new value)`` on user changes; programmatic changes under :meth:`_quiet` are ignored."""

        def handler(change: dict[str, Any]) -> None:
            if not self._muted:
                action(change["new"])

        widget.observe(handler, names="value")

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        self._muted += 1
        try:
            yield
        finally:
            self._muted -= 1

    def _header_button(self, label: str, column: str, width: str) -> w.Button:
        button = _cls(w.Button(description=label, layout=w.Layout(width=width)), "wb-storage-sort-header")
        button.on_click(
            lambda _b: self.sort_by(column, "desc" if self.sort == column and self.order == "asc" else "asc")
        )
        return button

    # -- running -------------------------------------------------------------------------------------
    def _run(self, what: str, coro: Coroutine[Any, Any, T]) -> T | None:
        """Run on the background loop; a failure becomes the status line (with the fix), not a traceback."""
        try:
            return self.runner.run(coro)
        except st.StorageError as exc:
            self._say(str(exc), error=True)
        except Exception as exc:  # shown to the user, keys masked
            self._say(f"{what} failed: {redact(f'{type(exc).__name__}: {exc}')}", error=True)
        return None

    def _say(self, text: str, *, error: bool = False) -> None:
        css = "wb-storage-error" if error else "wb-storage-ok"
        color = "#b00" if error else "#070"
        self.status.value = f"<span class='{css}' style='color:{color}'>{html.escape(text)}</span>"

    # -- identities ----------------------------------------------------------------------------------
    def _load_identities(self, identity: Identity | None, load_users: bool) -> None:
        options: list[tuple[str, str]] = [("admin (service role)", ADMIN), ("anon", ANON)]
        start = ADMIN
        if identity is not None and identity.role not in (None, "service_role"):
            if identity.role == "anon" and not (identity.claims or {}).get("sub"):
                start = ANON
            else:
                self._choices[CURRENT] = identity
                options.append((f"current: {identity.describe()}", CURRENT))
                start = CURRENT
        if load_users:
            users = (
                self._run("Listing users", st.known_users(self.settings))
                if self.settings.db_url or self.settings.project_ref
                else None
            )
            for user in users or []:
                key = f"user:{user['id']}"
                options.append((str(user["email"] or user["id"]), key))
        with self._quiet():
            self.identity_picker.options = options
        self.view_as(start)

    def view_as(self, key: str) -> None:
        """Act as ``admin``, ``anon``, ``current`` or ``user:<uuid>``; the listing reloads as that identity."""
        if key.startswith("user:") and key not in self._choices:
            found = self._run("Finding the user", st.identity_for_user(self.settings, key.removeprefix("user:")))
            if found is None:
                return
            self._choices[key] = found
        if key not in self._choices:
            self._say(f"Unknown identity {key!r}: choose one from the list.", error=True)
            return
        client = self._run("Connecting", st.client_as(self.settings, self._choices[key]))
        if client is None:
            return
        self.client = client
        with self._quiet():
            self.identity_picker.value = key
        self.selected = []
        self._clear_outputs()  # what another identity fetched must not stay on screen
        if self.bucket is not None:
            self.refresh()
        self._say(f"Viewing as {client.label}: the listing shows what storage policies let it see.")

    # -- navigation ----------------------------------------------------------------------------------
    def load_buckets(self) -> list[str]:
        """Fill the bucket picker (with the service key when configured, else as the identity)."""
        source = self.client
        if self.settings.service_role_key is not None:
            if self._admin is None:
                self._admin = self._run("Connecting", st.admin_client(self.settings))
            source = self._admin or source
        if source is None:
            return []
        buckets = self._run("Listing buckets", st.list_buckets(source)) or []
        names = [b.id for b in buckets]
        with self._quiet():
            self.bucket_picker.options = names
        if names and self.bucket not in names:
            self.select_bucket(names[0])
        elif self.bucket in names:
            with self._quiet():
                self.bucket_picker.value = self.bucket
        return names

    def select_bucket(self, bucket: str) -> None:
        self.bucket = bucket
        if bucket in self.bucket_picker.options:
            with self._quiet():
                self.bucket_picker.value = bucket
        self.open_folder("")

    def open_folder(self, folder: str) -> None:
        self.folder = folder.strip("/")
        self.offset = 0
        self._set_search_quietly("")
        self.selected = []
        self._render_breadcrumbs()
        self.refresh()

    def up(self) -> None:
        self.open_folder(self.folder.rsplit("/", 1)[0] if "/" in self.folder else "")

    def search(self, text: str) -> None:
        self.search_text = text.strip()
        self.offset = 0
        self.refresh()

    def sort_by(self, column: str, order: str = "asc") -> None:
        if column not in st.SORT_COLUMNS or order not in ("asc", "desc"):
            self._say(
                f"Cannot sort by {column!r} {order!r}: use name, updated_at or created_at, asc or desc.", error=True
            )
            return
        self.sort, self.order = column, order
        with self._quiet():
            if column in dict(SORTS).values():
                self.sort_picker.value = column
            self.order_picker.value = order
        self.offset = 0
        self.refresh()

    def set_page_size(self, size: int) -> None:
        self.limit = int(size)
        self.offset = 0
        self.refresh()

    def next_page(self) -> None:
        if self.listing is not None and self.listing.has_more:
            self.offset += self.limit
            self.refresh()

    def prev_page(self) -> None:
        if self.offset > 0:
            self.offset = max(0, self.offset - self.limit)
            self.refresh()

    def _set_search_quietly(self, text: str) -> None:
        self.search_text = text
        with self._quiet():
            self.search_box.value = text

    def refresh(self) -> st.Listing | None:
        """Reload the current page of the current folder."""
        if self.client is None or self.bucket is None:
            return None
        listing = self._run(
            "Listing",
            st.list_folder(
                self.client,
                self.bucket,
                self.folder,
                limit=self.limit,
                offset=self.offset,
                sort=self.sort,
                order="desc" if self.order == "desc" else "asc",
                search=self.search_text,
            ),
        )
        if listing is None:
            return None
        self.listing = listing
        visible = {e.path for e in listing.entries}
        self.selected = [p for p in self.selected if p in visible]
        self._render_rows()
        return listing

    # -- rendering -----------------------------------------------------------------------------------
    def _render_breadcrumbs(self) -> None:
        crumbs: list[w.Widget] = []
        root = _cls(w.Button(description=self.bucket or "", layout=w.Layout(width="auto")), "wb-storage-crumb")
        root.on_click(lambda _b: self.open_folder(""))
        crumbs.append(root)
        parts = [p for p in self.folder.split("/") if p]
        for i, part in enumerate(parts):
            target = "/".join(parts[: i + 1])
            crumbs.append(w.Label("/"))
            button = _cls(w.Button(description=part, layout=w.Layout(width="auto")), "wb-storage-crumb")
            button.on_click(lambda _b, t=target: self.open_folder(t))
            crumbs.append(button)
        self.breadcrumbs.children = crumbs

    def _render_rows(self) -> None:
        assert self.listing is not None
        rows: list[w.Widget] = []
        for entry in self.listing.entries:
            rows.append(self._row(entry))
        if not rows:
            empty = "no matches" if self.search_text else "empty (or nothing this identity may list)"
            rows.append(_cls(w.HTML(f"<i>{html.escape(empty)}</i>"), "wb-storage-empty"))
        self.rows.children = rows
        first = self.offset + 1 if self.listing.entries else 0
        last = self.offset + len(self.listing.entries)
        self.page_label.value = f"{first}–{last}" + (" (more)" if self.listing.has_more else "")
        self.prev_button.disabled = self.offset == 0
        self.next_button.disabled = not self.listing.has_more

    def _row(self, entry: st.Entry) -> w.Widget:
        check = _cls(
            w.Checkbox(value=entry.path in self.selected, indent=False, layout=w.Layout(width="28px")),
            "wb-storage-select",
        )
        check.disabled = entry.is_folder
        check.observe(lambda c, p=entry.path: self.toggle(p, bool(c["new"])), names="value")
        icon = "folder" if entry.is_folder else "file"
        name = _cls(
            w.Button(
                description=entry.name + ("/" if entry.is_folder else ""), icon=icon, layout=w.Layout(width="320px")
            ),
            "wb-storage-name",
        )
        if entry.is_folder:
            name.on_click(lambda _b, p=entry.path: self.open_folder(p))
        else:
            name.on_click(lambda _b, p=entry.path: self.show(p))
        updated = entry.updated_at.astimezone().strftime("%Y-%m-%d %H:%M") if entry.updated_at else ""
        row = w.HBox(
            [
                check,
                name,
                _cls(w.Label(st.describe_size(entry.size), layout=w.Layout(width="90px")), "wb-storage-size"),
                _cls(
                    w.Label(entry.mimetype or ("folder" if entry.is_folder else ""), layout=w.Layout(width="170px")),
                    "wb-storage-type",
                ),
                _cls(w.Label(updated, layout=w.Layout(width="150px")), "wb-storage-updated"),
            ]
        )
        return _cls(row, "wb-storage-row", "wb-storage-folder-row" if entry.is_folder else "wb-storage-file-row")

    # -- selection and preview -----------------------------------------------------------------------
    def toggle(self, path: str, selected: bool) -> None:
        if selected and path not in self.selected:
            self.selected.append(path)
        elif not selected and path in self.selected:
            self.selected.remove(path)

    def show(self, path: str) -> st.Preview | None:
        """Select one file and preview it (images; text, CSV and JSON up to 10 MB)."""
        self.selected = [path]
        if self.listing is not None:
            self._render_rows()
        if self.client is None or self.bucket is None:
            return None
        result = self._run("Preview", st.preview(self.client, self.bucket, path))
        self.preview = result
        self.preview_box.children = [self._preview_widget(result)] if result is not None else []
        return result

    def _preview_widget(self, p: st.Preview) -> w.Widget:
        title = f"<b>{html.escape(p.path)}</b> · {html.escape(p.mimetype)} · {st.describe_size(p.size)}"
        if p.note:
            title += f" · <i>{html.escape(p.note)}</i>"
        head = w.HTML(title)
        if p.kind == "image" and p.data is not None:
            subtype = p.mimetype.split(";", 1)[0].split("/", 1)[-1] or "png"
            image = _cls(
                w.Image(value=p.data, format=subtype, layout=w.Layout(max_width="480px")), "wb-storage-preview-image"
            )
            return w.VBox([head, image])
        if p.kind == "csv" and p.rows is not None:
            cells = "".join(
                "<tr>"
                + "".join(f"<{'th' if i == 0 else 'td'}>{html.escape(c)}</{'th' if i == 0 else 'td'}>" for c in row)
                + "</tr>"
                for i, row in enumerate(p.rows)
            )
            table = _cls(
                w.HTML(f"<div style='max-height:24em;overflow:auto'><table>{cells}</table></div>"),
                "wb-storage-preview-table",
            )
            return w.VBox([head, table])
        if p.kind in ("text", "json") and p.text is not None:
            shown = p.text[:TEXT_SHOWN] + ("\n…" if len(p.text) > TEXT_SHOWN else "")
            text = _cls(
                w.HTML(f"<pre style='max-height:24em;overflow:auto'>{html.escape(shown)}</pre>"),
                "wb-storage-preview-text",
            )
            return w.VBox([head, text])
        return w.VBox([head])

    def _single(self, action: str) -> str | None:
        if len(self.selected) != 1:
            self._say(f"Select one file to {action} (click its name).", error=True)
            return None
        return self.selected[0]

    # -- actions -------------------------------------------------------------------------------------
    def upload_files(self, files: Sequence[tuple[str, bytes, str | None]]) -> list[st.UploadResult]:
        """Upload into the current folder with a progress bar; each file succeeds or fails on its own."""
        if self.client is None or self.bucket is None:
            self._say("Choose a bucket first.", error=True)
            return []
        total = sum(len(f[1]) for f in files)
        self.progress.max = max(total, 1)
        self.progress.value = 0
        self.progress.layout.visibility = "visible"

        def progress(sent: int, _total: int) -> None:
            self.progress.value = min(sent, self.progress.max)

        results = self._run(
            "Upload",
            st.upload_many(
                self.client, self.bucket, self.folder, files, upsert=self.upsert_box.value, progress=progress
            ),
        )
        self.progress.value = self.progress.max
        self.progress.layout.visibility = "hidden"
        if results is None:
            return []
        failed = [r for r in results if not r.ok]
        done = len(results) - len(failed)
        if failed:
            self._say(f"Uploaded {done} of {len(results)}. " + " ".join(r.error or "" for r in failed), error=True)
        else:
            self._say(f"Uploaded {done} file(s) to {self.bucket}/{self.folder}".rstrip("/") + ".")
        self.refresh()
        return results

    def _on_upload(self, change: dict[str, Any]) -> None:
        items = change["new"]
        if not items or self._muted:
            return
        files = [(str(f["name"]), bytes(f["content"]), f.get("type") or None) for f in items]
        self.upload_files(files)
        with self._quiet():
            self.uploader.value = ()

    def download_selected(self) -> bytes | None:
        """The selected file's bytes, offered as a browser download link (up to 10 MB)."""
        path = self._single("download")
        if path is None or self.client is None or self.bucket is None:
            return None
        data = self._run("Download", st.download(self.client, self.bucket, path))
        if data is None:
            return None
        name = path.rsplit("/", 1)[-1]
        if len(data) > DOWNLOAD_LINK_LIMIT:
            self.download_link.value = ""
            self._say(f"{path} is {st.describe_size(len(data))}: too big for a link here. Use a signed URL instead.")
            return data
        mimetype = st.guess_type(name)
        encoded = base64.b64encode(data).decode("ascii")
        self.download_link.value = (
            f"<a download='{html.escape(name)}' href='data:{mimetype};base64,{encoded}'>⬇ save {html.escape(name)}</a>"
        )
        self._say(f"Downloaded {path} ({st.describe_size(len(data))}).")
        return data

    def sign_selected(self, expires_in: int | None = None) -> str | None:
        """A signed URL for the selected file, shown in a text box to copy."""
        path = self._single("sign")
        if path is None or self.client is None or self.bucket is None:
            return None
        seconds = int(expires_in or self.expiry_picker.value)
        url = self._run("Signing", st.signed_url(self.client, self.bucket, path, seconds))
        if url is None:
            return None
        self.signed_url_box.value = url
        self.signed_url_box.layout.display = None
        self._say(f"Signed URL for {path}, valid {seconds} s: anyone with it can download the file.")
        return url

    def move_selected(self, target: str) -> str | None:
        """Rename (a bare name) or move (a path from the bucket root) the selected file."""
        path = self._single("rename or move")
        if path is None or self.client is None or self.bucket is None:
            return None
        target = target.strip()
        if not target:
            self._say("Type the new name (or folder/path/name) first.", error=True)
            return None
        if "/" in target:
            call = st.move(self.client, self.bucket, path, target)
        else:
            call = st.rename(self.client, self.bucket, path, target)
        moved = self._run("Move", call)
        if moved is None:
            return None
        self.selected = []
        self.target_box.value = ""
        self._say(f"Moved {path} to {moved}.")
        self.refresh()
        return moved

    def request_delete(self) -> None:
        if not self.selected:
            self._say("Tick the files to delete first.", error=True)
            return
        names = ", ".join(html.escape(p) for p in self.selected[:5]) + (" …" if len(self.selected) > 5 else "")
        self.confirm_text.value = f"Delete {len(self.selected)} file(s) for good? {names}"
        self.confirm_box.layout.display = None

    def cancel_delete(self) -> None:
        self.confirm_box.layout.display = "none"
        self._say("Nothing deleted.")

    def confirm_delete(self) -> st.DeleteResult | None:
        self.confirm_box.layout.display = "none"
        if not self.selected or self.client is None or self.bucket is None:
            return None
        result = self._run("Delete", st.delete(self.client, self.bucket, list(self.selected)))
        if result is None:
            return None
        self.selected = []
        if result.refused:
            self._say(
                f"Deleted {len(result.deleted)}; {len(result.refused)} kept (missing, or no delete policy lets "
                f"{self.client.label} remove them): {', '.join(result.refused)}",
                error=True,
            )
        else:
            self._say(f"Deleted {len(result.deleted)} file(s).")
        self.preview_box.children = []
        self.refresh()
        return result

    def _clear_outputs(self) -> None:
        self.preview = None
        self.preview_box.children = []
        self.signed_url_box.value = ""
        self.signed_url_box.layout.display = "none"
        self.download_link.value = ""

    # -- what tests and users read -------------------------------------------------------------------
    def names(self) -> list[str]:
        """The names in the current listing, as shown."""
        return [e.name for e in self.listing.entries] if self.listing else []


def open_storage_browser(settings: Settings, identity: Identity | None = None) -> w.Widget:
    """What ``%sbstorage`` shows: a browser acting as ``identity`` (admin when None)."""
    return StorageBrowser(settings, identity).widget
