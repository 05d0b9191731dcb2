"""The stand-in's mail catcher: the messages the local Auth API would have e-mailed, kept on disk.

The Supabase CLI's local stack catches every Auth mail in a web inbox (Inbucket/Mailpit). The stand-in
keeps them as one JSON file per message in ``<data>/inbox`` (folder 0700, files 0600: a message holds a
one-time token that signs its reader in), readable from Python (:class:`Inbox`), the ``%sbinbox`` magic
and ``workbench local inbox``. A notebook completes "confirm sign-up", "magic link", "reset password" and
"invite" with the official client: ``verify_otp({"token_hash": msg.token_hash, "type": msg.type})`` or
``verify_otp({"email": msg.to, "token": msg.otp, "type": msg.type})``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["INBOX_DIR", "Inbox", "Message"]

INBOX_DIR = "inbox"

SUBJECTS = {
    "signup": "Confirm Your Signup",
    "invite": "You have been invited",
    "magiclink": "Your Magic Link",
    "recovery": "Reset Your Password",
    "email_change": "Confirm Email Change",
}


@dataclass(frozen=True)
class Message:
    """One caught mail. ``otp`` and ``token_hash`` are secrets of the recipient: never in the repr."""

    id: str
    to: str
    type: str  # the verify_otp type: signup, invite, magiclink, recovery, email_change
    subject: str
    link: str = field(repr=False)
    otp: str = field(repr=False)
    token_hash: str = field(repr=False)
    redirect_to: str
    created_at: str

    @property
    def text(self) -> str:
        """The body a user would read (GoTrue's default templates, shortened)."""
        return f"{self.subject}\n\nFollow this link: {self.link}\nOr enter this code: {self.otp}\n"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Inbox:
    """The messages of one stand-in's data folder, oldest first."""

    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / INBOX_DIR

    def __repr__(self) -> str:
        return f"Inbox({str(self.path)!r}, {len(self.messages())} messages)"

    def _folder(self) -> Path:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        return self.path

    def deliver(self, *, to: str, type: str, link: str, otp: str, token_hash: str, redirect_to: str = "") -> Message:
        """Keep one message (written to a private temporary file, then renamed into place)."""
        now = dt.datetime.now(dt.UTC)
        message = Message(
            id=uuid.uuid4().hex,
            to=to,
            type=type,
            subject=SUBJECTS.get(type, type),
            link=link,
            otp=otp,
            token_hash=token_hash,
            redirect_to=redirect_to,
            created_at=now.isoformat().replace("+00:00", "Z"),
        )
        folder = self._folder()
        name = f"{now.strftime('%Y%m%dT%H%M%S%f')}-{message.id}.json"
        tmp = folder / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(message.as_dict(), fh)
        os.replace(tmp, folder / name)
        return message

    def messages(self, to: str | None = None) -> list[Message]:
        """All messages (to one address, case-insensitive, if given), oldest first."""
        if not self.path.is_dir():
            return []
        out = []
        for file in sorted(self.path.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                out.append(Message(**json.loads(file.read_text())))
        if to is not None:
            out = [m for m in out if m.to.lower() == to.lower()]
        return out

    def latest(self, to: str, type: str | None = None) -> Message:
        """The newest message to ``to`` (of ``type`` if given); LookupError says what the inbox holds."""
        found = [m for m in self.messages(to) if type is None or m.type == type]
        if not found:
            kinds = sorted({m.type for m in self.messages(to)})
            held = f"it holds {', '.join(kinds)} messages for that address" if kinds else "it holds none for them"
            raise LookupError(f"No {type or ''} message to {to} in the local inbox ({held}).".replace("  ", " "))
        return found[-1]

    def clear(self) -> int:
        """Delete every message; returns how many there were."""
        count = 0
        if self.path.is_dir():
            for file in self.path.glob("*.json"):
                file.unlink(missing_ok=True)
                count += 1
        return count


def describe(messages: list[Message]) -> str:
    """The inbox as text for the CLI and the magic: newest last, each with its link and code (the
    reader asked for their own local mail; nothing here is ever logged)."""
    if not messages:
        return "The local inbox is empty."
    lines = []
    for m in messages:
        lines.append(f"{m.created_at}  {m.type:<12} to {m.to}  — {m.subject}")
        lines.append(f"    code: {m.otp}    link: {m.link}")
    return "\n".join(lines)
