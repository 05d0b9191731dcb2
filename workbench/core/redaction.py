"""Mask secrets in text that will be shown, logged or saved: URL passwords, keys, JWTs, bearer tokens.

Every message the workbench shows passes through :func:`redact`, because these texts end up in saved
notebooks and logs. Stdlib only: any layer may use it.
"""

from __future__ import annotations

import re

__all__ = ["redact"]

_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@\[\]]*:)(?P<pw>\S*)@")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]+=*\.[A-Za-z0-9_\-]+=*\.[A-Za-z0-9_\-]*=*")
_SB_KEY = re.compile(r"\b(?P<kind>sb_(?:secret|publishable)_)[A-Za-z0-9_\-]+")
_BEARER = re.compile(r"(?i)\b(?P<head>bearer\s+)[A-Za-z0-9._~+/\-]+=*")
_KEYWORD_SECRET = re.compile(
    r"""(?ix)
    (?P<head>["']?\b(?:password|passwd|pgpassword|apikey|api[_-]?key|jwt[_-]?secret
        |service[_-]?role[_-]?key|secret[_-]?key)["']?\s*[=:]\s*)
    (?P<value>(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')(?=[\s,;&}]|$)|\S+)
    """
)


def redact(text: str) -> str:
    """Mask URL passwords, ``password=`` values, JWTs, Bearer tokens and ``sb_secret_``/``sb_publishable_``
    keys, so an error message can be shown, logged or saved in a notebook."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}***@", text)
    text = _KEYWORD_SECRET.sub(_mask_keyword_value, text)
    text = _BEARER.sub(lambda m: f"{m['head']}***", text)
    text = _JWT.sub("[redacted JWT]", text)
    return _SB_KEY.sub(lambda m: f"{m['kind']}***", text)


def _mask_keyword_value(m: re.Match[str]) -> str:
    value = m["value"]
    if value == "***" or value.strip("\"'") == "***":
        return m.group()
    quote = value[0] if value[:1] in "\"'" and len(value) >= 2 else ""
    return f"{m['head']}{quote}***{quote}"
