"""Which values the page masks, and how a large payload is cut down for display.

The rule for "this looks secret" is `stub_runtime.live_protocol.looks_secret`, applied to key names
(only normalised here: "api key" and "api.key" are read as "api_key"). The API returns the payloads
whole plus the list of key names that look secret; the page masks every value under such a key, at
any depth, including inside JSON documents carried in strings (an API Gateway `body`). Masking on the
page from whole data means "reveal" needs no round trip; the API's downloads stay whole.
"""

from __future__ import annotations

import json
import re
from typing import Any

from stub_runtime.live_protocol import looks_secret

#: Payloads whose compact JSON is larger than this are shown cut down, with a download link.
DISPLAY_LIMIT_BYTES = 64 * 1024

_SEPARATORS = re.compile(r"[\s.]+")
_MAX_DEPTH = 64


def is_secret_name(name: str) -> bool:
    """True when a value stored under `name` (an env var, a JSON key, a header) must be masked."""
    return looks_secret(name) or looks_secret(_SEPARATORS.sub("_", name))


def _embedded_json(text: str) -> Any:
    """The object or array a string carries as JSON text (an API Gateway body), else None."""
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, (dict, list)) else None


def secret_keys(*values: Any) -> list[str]:
    """Every key name, at any depth of `values`, whose value must be masked (sorted, unique)."""
    found: set[str] = set()
    seen: set[str] = set()

    def walk(value: Any, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                name = str(key)
                if name not in seen:
                    seen.add(name)
                    if is_secret_name(name):
                        found.add(name)
                walk(item, depth + 1)
        elif isinstance(value, list):
            for item in value:
                walk(item, depth + 1)
        elif isinstance(value, str) and len(value) > 1:
            embedded = _embedded_json(value)
            if embedded is not None:
                walk(embedded, depth + 1)

    for value in values:
        walk(value, 0)
    return sorted(found)


def dumps(value: Any, *, indent: int | None = None) -> str:
    """JSON text of a payload (anything not JSON-native is written as its str())."""
    if indent is None:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


def json_size(value: Any) -> int:
    """Bytes of the payload's compact UTF-8 JSON."""
    return len(dumps(value).encode())


# Each level cuts harder: (longest string kept, items kept per array, keys kept per object).
_LEVELS = ((8192, 400, 400), (2048, 100, 150), (512, 25, 60), (128, 8, 20), (40, 3, 8))

#: The page recognises these markers and shows them as "cut here" rather than as data.
TRUNCATION_MARK = "…[truncated: "


def _mark(count: int, what: str) -> str:
    return f"{TRUNCATION_MARK}{count:,} more {what}]"


def _shrink(value: Any, max_str: int, max_items: int, max_keys: int, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return _mark(1, "nested levels")
    if isinstance(value, str):
        if len(value) <= max_str:
            return value
        embedded = _embedded_json(value)
        if embedded is not None:  # keep it a JSON document so that masking still applies inside it
            return dumps(_shrink(embedded, max_str, max_items, max_keys, depth + 1))
        return value[:max_str] + _mark(len(value) - max_str, "characters")
    if isinstance(value, list):
        kept = [_shrink(v, max_str, max_items, max_keys, depth + 1) for v in value[:max_items]]
        if len(value) > max_items:
            kept.append(_mark(len(value) - max_items, "items"))
        return kept
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for i, (key, item) in enumerate(value.items()):
            if i == max_keys:
                out["…"] = _mark(len(value) - max_keys, "keys")
                break
            out[str(key)] = _shrink(item, max_str, max_items, max_keys, depth + 1)
        return out
    return value


def for_display(value: Any, limit: int = DISPLAY_LIMIT_BYTES) -> tuple[Any, int, bool]:
    """(what to show, the whole payload's JSON size in bytes, whether it was cut down).

    A payload over `limit` keeps its shape: long strings, long arrays and big objects are cut, with
    a marker saying how much was left out, until it fits."""
    size = json_size(value)
    if size <= limit:
        return value, size, False
    for max_str, max_items, max_keys in _LEVELS:
        shown = _shrink(value, max_str, max_items, max_keys, 0)
        if json_size(shown) <= limit:
            return shown, size, True
    return _mark(size, "bytes of JSON; download the payload to see it"), size, True
