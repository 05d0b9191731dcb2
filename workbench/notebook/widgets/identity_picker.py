"""The identity picker: search ``auth.users``, choose a role, edit extra claims, see the result.

Choosing sets the default identity of ``%%sbquery``. Every action is a method that tests (and the
browser) drive the same way: :meth:`search`, :meth:`choose`.
"""

from __future__ import annotations

import html
import json
from typing import Any

import ipywidgets as w

from workbench.core.identity import Identity, IdentityError, parse_claims
from workbench.notebook.session import Workbench

KINDS = ["user", "anon", "service_role", "role", "none"]


class IdentityPicker:
    """ipywidgets front end over :class:`~workbench.notebook.session.Workbench` identity calls."""

    def __init__(self, wb: Workbench) -> None:
        self.wb = wb
        self.kind = w.ToggleButtons(options=KINDS, value="user", description="Run as")
        self.kind.add_class("wb-identity-kind")
        self.query = w.Text(placeholder="search email or id…", description="User")
        self.query.add_class("wb-identity-search")
        self.users = w.Dropdown(options=[], description="Found")
        self.users.add_class("wb-identity-users")
        self.role = w.Text(value="authenticated", description="Role")
        self.role.add_class("wb-identity-role")
        self.claims = w.Textarea(placeholder='{"user_role": "admin"}', description="Claims", rows=3)
        self.claims.add_class("wb-identity-claims")
        self.apply = w.Button(description="Use this identity", button_style="primary")
        self.apply.add_class("wb-identity-apply")
        self.status = w.HTML()
        self.status.add_class("wb-identity-status")
        self.preview = w.HTML()
        self.preview.add_class("wb-identity-preview")
        self.widget = w.VBox(
            [self.kind, w.HBox([self.query, self.users]), self.role, self.claims, self.apply, self.status, self.preview]
        )
        self.widget.add_class("wb-identity-picker")
        self.query.observe(lambda change: self.search(change["new"]), names="value")
        self.apply.on_click(lambda _b: self.choose())
        self.kind.observe(lambda _c: self._sync_visibility(), names="value")
        self._sync_visibility()
        self.search("")
        self._show_current()

    def _sync_visibility(self) -> None:
        user = self.kind.value == "user"
        self.query.layout.display = None if user else "none"
        self.users.layout.display = None if user else "none"
        self.role.layout.display = None if self.kind.value == "role" else "none"

    def search(self, text: str) -> list[dict[str, Any]]:
        """Fill the dropdown with users whose email or id matches ``text``."""
        users = self.wb.run(self.wb.find_users(text, limit=50))
        self.users.options = [(f"{u['email'] or '(no email)'} · {u['id']}", str(u["id"])) for u in users]
        self.status.value = f"{len(users)} user(s) found" if text else ""
        return users

    def build_identity(self) -> Identity:
        """The identity the form describes (raises :class:`IdentityError` with the fix)."""
        extra: dict[str, Any] | None = parse_claims(self.claims.value) if self.claims.value.strip() else None
        kind = self.kind.value
        if kind == "user":
            if not self.users.value:
                raise IdentityError("Choose a user first: type part of an email or id to search auth.users.")
            identity = self.wb.run(self.wb.resolve_identity(str(self.users.value), base=Identity.none()))
        elif kind == "anon":
            identity = Identity.anon()
        elif kind == "service_role":
            identity = Identity.service_role()
        elif kind == "role":
            identity = self.wb.run(self.wb.resolve_identity(None, self.role.value.strip(), base=Identity.none()))
        else:
            identity = Identity.none()
        return identity.with_claims(extra)

    def choose(self) -> Identity | None:
        """Apply the form: set the workbench's default identity and show the claims in force."""
        try:
            identity = self.build_identity()
        except IdentityError as exc:
            self.status.value = f"<span style='color:#b00' class='wb-identity-error'>{html.escape(str(exc))}</span>"
            return None
        self.wb.impersonate(identity)
        self.status.value = (
            f"<span style='color:#070' class='wb-identity-ok'>%%sbquery now runs as "
            f"<b>{html.escape(identity.describe())}</b></span>"
        )
        self._show_current()
        return identity

    def _show_current(self) -> None:
        identity = self.wb.default_identity
        claims = json.dumps(dict(identity.claims or {}), indent=2, default=str)
        self.preview.value = (
            f"<div>role <code>{html.escape(identity.role or '(connection role)')}</code></div>"
            f"<pre style='max-height:16em;overflow:auto'>{html.escape(claims)}</pre>"
        )
