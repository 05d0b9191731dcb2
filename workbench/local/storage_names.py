"""What Supabase Storage accepts as a key, a bucket name, a size limit and a MIME rule."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from workbench.local.storage_errors import (
    bad_request,
    invalid_bucket_name,
    invalid_key,
    invalid_mime_type,
    invalid_request,
)

MAX_KEY_BYTES = 1024
_KEY_CHARS = re.compile(r"[\w/!\-.*'() &$@=;:+,?]*", re.ASCII)
_BUCKET_CHARS = re.compile(r"[\w!\-.*'() &$@=;:+,?]*", re.ASCII)
_MIME_RULE = re.compile(r"^([a-zA-Z0-9\-+.]+)/([a-zA-Z0-9\-+.]+)(;\s*charset=[a-zA-Z0-9\-]+)?$|\*$")
_SIZE_WITH_UNIT = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(gb|mb|kb|b)$", re.IGNORECASE)

# -------------------------------------------------------------------------------------- name checks


def check_key(key: str) -> str:
    """Refuse what Supabase refuses, plus dot segments and a leading ``/`` (which could mean a path)."""
    if not key or not _KEY_CHARS.fullmatch(key):
        raise invalid_key(key)
    if key.startswith("/"):
        raise invalid_key(key, " (a key must not start with '/')")
    if any(segment in (".", "..") for segment in key.split("/")):
        raise invalid_key(key, " (a key must not contain '.' or '..' segments)")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise invalid_key(key, f" (longer than {MAX_KEY_BYTES} bytes)")
    return key


def check_bucket_name(name: str) -> str:
    if not name or len(name) >= 64 or not _BUCKET_CHARS.fullmatch(name):
        raise invalid_bucket_name(name)
    return name


def parse_size_limit(value: Any) -> int | None:
    """A bucket's ``file_size_limit``: bytes as an integer, or text such as ``"20MB"`` (Supabase units)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise bad_request("body/file_size_limit must be an integer or a size such as '20MB'")
    if isinstance(value, int):
        if value < 0:
            raise bad_request("body/file_size_limit must be >= 0")
        return value
    if isinstance(value, str):
        match = _SIZE_WITH_UNIT.match(value.strip())
        if not match:
            raise invalid_request("Invalid file size format, hint: use 20GB / 20MB / 30KB / 3B")
        number = float(match.group(1))
        factor = {"gb": 10**9, "mb": 10**6, "kb": 1000, "b": 1}[match.group(2).lower()]
        return int(number * factor)
    raise bad_request("body/file_size_limit must be an integer or a size such as '20MB'")


def check_mime_rules(rules: Any) -> list[str] | None:
    if rules is None:
        return None
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise bad_request("body/allowed_mime_types must be an array of strings")
    kept = [r for r in rules if r]
    for rule in kept:
        if len(rule) > 1000 or not _MIME_RULE.search(rule):
            raise invalid_mime_type(rule)
    return kept


def mime_allowed(mimetype: str, rules: list[str]) -> bool:
    """``type/subtype`` against rules such as ``image/png`` or ``image/*`` (parameters ignored)."""
    base = mimetype.split(";", 1)[0].strip().lower()
    parts = base.split("/")
    if len(parts) != 2 or not all(parts):
        return False
    kind, sub = parts
    for rule in rules:
        rule_parts = rule.split(";", 1)[0].strip().lower().split("/")
        if len(rule_parts) != 2:
            continue
        if rule_parts[0] == kind and rule_parts[1] in ("*", sub):
            return True
    return False
