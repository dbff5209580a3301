"""Find ``pprint``-style dict dumps of QMP replies in a debug log and read them back.

Management agents often log ``query-migrate`` replies as Python dicts, one
``'key': value`` per line, with the logger's prefix in front of every line::

    debug | vm> {'blocked': False,
    debug | vm>  'expected-downtime': 4000,
    debug | vm>  'ram': {'dirty-pages-rate': 0,
    debug | vm>          'mbps': 0.18144,

A dump is cut off when the log (or the excerpt someone pasted) is.  Complete dumps
are read with :func:`ast.literal_eval`; incomplete ones are salvaged key by key, so
every value before the cut survives.  Double-quoted (JSON) keys are accepted too, to
salvage truncated pretty-printed JSON.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Lazy prefix: the body starts at the first "'key': " (optionally after "{").
# Where the body starts: the first "'key': " (optionally after "{").  Searched for, not
# matched after a lazy prefix: that form rescanned every run of blanks (quadratic).
_DUMP_KEY_RE = re.compile(r"(?:\{\s*)?(?:'[^']*'|\"[^\"]*\")\s*:(?:\s|$)")
_KEY_RE = re.compile(
    r"^\s*(?:\{\s*)?(['\"])(?P<key>[^'\"]*)\1\s*:\s*(?P<val>.*)$"
)  # one \s* per gap
_JSON_WORDS = {"true": True, "false": False, "null": None}
_HINT_RE = re.compile(
    r"['\"](ram|dirty-sync-count|expected-downtime|total-time|mbps|page-size|"
    r"dirty-pages-rate|setup-time|xbzrle-cache|pages-per-second)['\"]\s*:"
)
MAX_DEPTH = 8
_CONTINUATION = set("'\"[]}-0123456789")


@dataclass
class Dump:
    line: int  # 1-based line of the dump's first line
    value: dict[str, Any]
    partial: bool


def sniff(lines: Sequence[str]) -> float:
    hits = sum(1 for line in lines if _HINT_RE.search(line) and "'" in line)
    return min(0.2 * hits, 0.8)


def _depth_change(text: str) -> int:
    depth = 0
    quote = ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
    return depth


def find_dumps(lines: Sequence[str]) -> list[Dump]:
    groups: list[tuple[int, list[str]]] = []
    current: list[str] = []
    start = 0
    depth = 0
    prefix = ""
    for no, line in enumerate(lines, 1):
        m = _DUMP_KEY_RE.search(line.rstrip())
        if m is None:
            rest = line[len(prefix) :] if line.startswith(prefix) else ""
            if current and depth > 0 and rest.strip()[:1] in _CONTINUATION:
                # pprint wraps long strings and lists onto lines without a key
                current.append(rest)
                depth += _depth_change(rest)
                continue
            if current:
                groups.append((start, current))
            current, depth = [], 0
            continue
        body = line.rstrip()[m.start() :]
        if current and depth <= 0 and body.lstrip().startswith("{"):
            groups.append((start, current))
            current, depth = [], 0
        if not current:
            start = no
            prefix = line[: m.start()].rstrip()
        current.append(body)
        depth += _depth_change(body)
    if current:
        groups.append((start, current))
    dumps = []
    for start, bodies in groups:
        value, partial = _read(bodies)
        if value:
            dumps.append(Dump(start, value, partial))
    return dumps


def _read(bodies: list[str]) -> tuple[dict[str, Any], bool]:
    text = "\n".join(bodies)
    if text.lstrip().startswith("{"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
        else:
            if isinstance(value, dict):
                return value, False
    return salvage(bodies), True


def _literal(text: str) -> tuple[bool, Any]:
    if text in _JSON_WORDS:
        return True, _JSON_WORDS[text]
    try:
        return True, ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


def salvage(bodies: list[str]) -> dict[str, Any]:
    """Read ``'key': value`` lines into nested dicts, ignoring what cannot be read."""
    root: dict[str, Any] = {}
    stack: list[dict[str, Any]] = [root]
    bodies = [b for b in bodies if b.strip()]
    if bodies and not bodies[-1].rstrip().endswith((",", "}", "{")):
        bodies = bodies[:-1]  # the line the cut went through: its value may be cut short
    for body in bodies:
        rest = body
        for _ in range(MAX_DEPTH):  # a line may open nested dicts: "'ram': {'mbps': 1,"
            m = _KEY_RE.match(rest)
            if m is None:
                break
            key, val = m.group("key"), m.group("val").strip()
            if val.startswith("{") and len(stack) < MAX_DEPTH:
                child: dict[str, Any] = {}
                stack[-1][key] = child
                stack.append(child)
                rest = val[1:]
                if not rest.strip():
                    break
                if rest.strip().startswith("}"):
                    closes = len(rest.strip()) - len(rest.strip().lstrip("}"))
                    del stack[max(1, len(stack) - closes) :]
                    break
                continue
            _assign(stack, key, val)
            break
    return root


def _assign(stack: list[dict[str, Any]], key: str, val: str) -> None:
    text = val.rstrip().rstrip(",").rstrip()
    closes = 0
    while True:
        ok, value = _literal(text)
        if ok:
            stack[-1][key] = value
            break
        if not text.endswith("}") or closes >= MAX_DEPTH:
            return  # unreadable (e.g. cut in the middle of a value)
        text = text[:-1].rstrip()
        closes += 1
    if closes:
        del stack[max(1, len(stack) - closes) :]


def count_values(value: dict[str, Any]) -> int:
    """Number of leaf values in nested dicts (for the "salvaged N values" warning)."""
    return sum(count_values(v) if isinstance(v, dict) else 1 for v in value.values())
