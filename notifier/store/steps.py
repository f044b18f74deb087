"""A workflow step's value as the store records it: JSON bytes, secrets masked, size-limited.

Pure functions (no I/O), run in the store's work threads: encoding and redacting a 100 KB value
holds the GIL for about a millisecond, which the event loop should not spend.

Stricter than a result document (`document`), which keeps what JSON cannot hold as its text: a
step's value is handed back to the workflow on a resume in place of running the step, so a value
that would come back as something else (a datetime as a string, an object as its repr) is refused
(StepNotStorable) instead of replayed wrong. What JSON holds as something close (a tuple as a
list, NaN as null) is stored as JSON reads it back, and the workflow gets that decoded value on its
first run too (the runner's side), so a first run and a replay see the same types.

Secrets: every string in the value (keys too) goes through the redactor that keeps configured
secrets out of logs, before encoding; a value is walked rather than its JSON text searched, so a
secret holding a quote or a backslash (escaped in JSON text) is still found.
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

from ..errors import StepNotStorable, StepTooLarge
from ..logs import redactor
from .document import read_back

__all__ = ["decode_step", "encode_step"]

# Not OPT_APPEND_NEWLINE (a row, not a file); datetimes and dataclasses are refused, not converted.
_ORJSON_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# orjson's own limit: deeper values are refused rather than walked (and left unredacted) further.
MAX_DEPTH: Final = 255


def _redacted(value: Any, depth: int = 0) -> Any:
    """`value` with configured secrets masked in every string; containers are copied, never
    changed in place (the workflow still holds them)."""
    if isinstance(value, str):
        return redactor.redact(value)
    if depth > MAX_DEPTH:
        raise StepNotStorable(f"the step's value is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {
            (redactor.redact(key) if isinstance(key, str) else key): _redacted(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redacted(item, depth + 1) for item in value]
    return value


def encode_step(value: object, *, limit_bytes: int) -> bytes:
    """The bytes to store for a step's value. StepNotStorable if it is not JSON, StepTooLarge if
    the encoded value is over `limit_bytes`."""
    masked = _redacted(value)
    try:
        data = orjson.dumps(masked, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        data = _encode_standard(masked)
    if len(data) > limit_bytes:
        raise StepTooLarge(len(data), limit_bytes)
    return data


def _encode_standard(value: object) -> bytes:
    """What orjson refuses but JSON holds: an integer beyond 64 bits, a lone surrogate, a key that
    is a number. Anything JSON cannot hold is StepNotStorable, with the reason."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: valid escaped, not as UTF-8
            return json.dumps(value, ensure_ascii=True, allow_nan=False).encode("ascii")
    except (TypeError, ValueError, RecursionError) as exc:
        raise StepNotStorable(f"the step's value is not JSON: {exc}") from None


def decode_step(data: bytes) -> Any:
    """The value stored bytes stand for (the store's one JSON reader, `document.read_back`)."""
    return read_back(data)
