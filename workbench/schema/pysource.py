"""Python source for generated code: string literals, ``text()`` of SQL, import blocks, and line wrapping
the way ruff format would (so generated modules pass the project's own lint)."""

from __future__ import annotations

import functools
import re

_PLAIN = re.compile(r'[^"\\\x00-\x1f\x7f]*')


@functools.lru_cache(maxsize=65536)
def py_literal(text: str) -> str:
    """A Python string literal, double-quoted unless that needs more escapes (as ruff format prefers)."""
    if _PLAIN.fullmatch(text) and text.isprintable():
        return f'"{text}"'
    quote = "'" if text.count('"') > text.count("'") else '"'
    out = []
    for ch in text:
        if ch == "\\" or ch == quote:
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or not ch.isprintable():
            out.append(repr(ch)[1:-1])
        else:
            out.append(ch)
    return quote + "".join(out) + quote


def py_block(text: str) -> str:
    """A long SQL statement as a readable triple-quoted literal."""
    if "\n" not in text:
        return py_literal(text)
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if body.endswith('"'):
        body = body[:-1] + '\\"'
    return f'"""{body}"""'


@functools.lru_cache(maxsize=65536)
def sql_text(sql: str) -> str:
    """``text("...")`` for a SQL fragment; a colon that text() would take for a bind parameter is escaped."""
    escaped = _BIND_LIKE.sub(lambda _m: "\\:", sql)
    return f"text({py_literal(escaped)})"


_BIND_LIKE = re.compile(r"(?<![:\w\\]):(?=\w)")


class Imports:
    def __init__(self) -> None:
        self.names: dict[str, set[str]] = {}
        self.modules: set[str] = set()
        self.type_checking: dict[str, set[str]] = {}  # for string annotations naming other modules' classes

    def add(self, module: str, name: str) -> str:
        self.names.setdefault(module, set()).add(name)
        return name

    def render(self) -> str:
        std = [f"import {mod}" for mod in sorted(self.modules)]
        std += [self._line(mod) for mod in ("decimal", "typing") if mod in self.names]
        third = [self._line(mod) for mod in sorted(self.names) if mod.startswith("sqlalchemy")]
        local = [self._line(mod) for mod in sorted(self.names) if mod.startswith(".")]
        blocks = [b for b in (std, third, local) if b]
        if self.type_checking:
            blocks.append(
                ["if TYPE_CHECKING:"]
                + [
                    f"    from {mod} import {', '.join(sorted(names))}"
                    for mod, names in sorted(self.type_checking.items())
                ]
            )
        return "\n\n".join("\n".join(b) for b in blocks)

    def merge(self, other: Imports) -> None:
        for mod, names in other.names.items():
            self.names.setdefault(mod, set()).update(names)
        self.modules |= other.modules

    def _line(self, module: str) -> str:
        """isort's order (constants, classes, functions), wrapped one name a line when too long."""
        names = sorted(
            self.names[module], key=lambda n: (0 if n.isupper() and len(n) > 1 else 1 if n[0].isupper() else 2, n)
        )
        line = f"from {module} import {', '.join(names)}"
        if len(line) <= 120:
            return line
        return f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")"


def chunks(sql: str, width: int) -> list[str]:
    """Cut a long statement into pieces at line ends and at spaces outside quotes; joined, they are the same."""
    pieces: list[str] = []
    start, last_space, quote = 0, -1, ""
    for i, ch in enumerate(sql):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == " ":
            last_space = i
        if ch == "\n":
            pieces.append(sql[start : i + 1])
            start = last_space = i + 1
        elif i - start >= width and last_space > start:
            pieces.append(sql[start : last_space + 1])
            start = last_space + 1
    if start < len(sql):
        pieces.append(sql[start:])
    return pieces


def wrap(line: str, width: int = 120) -> str:
    """Break an over-long line ending in a call at the call's arguments, one a line, as black does."""
    if len(line) <= width or "\n" in line or '"""' in line:
        return line
    body = line.rstrip()
    comma = ""
    if body.endswith(","):
        body, comma = body[:-1], ","
    opening = outer_call(body)
    if opening is None:
        return line
    indent = line[: len(line) - len(line.lstrip())]
    head, inner = body[: opening + 1], body[opening + 1 : -1]
    parts = split_args(inner)
    if not parts:
        return line
    inner_indent = indent + "    "
    lines = [wrap(f"{inner_indent}{p}," if len(parts) > 1 else f"{inner_indent}{p}", width) for p in parts]
    return f"{head}\n" + "\n".join(lines) + f"\n{indent}){comma}"


def outer_call(text: str) -> int | None:
    """Index of the first call's ``(`` whose matching ``)`` ends ``text``."""
    stack: list[int] = []
    quote = ""
    pairs: dict[int, int] = {}
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            stack.append(i)
        elif ch in ")]}" and stack:
            pairs[stack.pop()] = i
        i += 1
    for start in sorted(pairs):
        if (
            pairs[start] == len(text) - 1
            and text[start] == "("
            and start > 0
            and (text[start - 1].isalnum() or text[start - 1] == "_")
        ):
            return start
    return None


def split_args(text: str) -> list[str]:
    """Split at top-level commas, respecting brackets and string literals."""
    parts, depth, quote, cur, i = [], 0, "", [], 0
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == "\\":
                cur.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            cur.append(ch)
        elif ch in "([{":
            depth += 1
            cur.append(ch)
        elif ch in ")]}":
            depth -= 1
            cur.append(ch)
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if cur and "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts
