"""The result document: the one JSON file per finished workflow, which is the truth of the store.

A document carries its own index row (the ``workflow`` section), so an index that was lost or never
written can be rebuilt from the files alone. It never carries delivery state: that changes after
the write, and documents are written once and never rewritten.

Pure functions only (no I/O), so encoding and validation are testable as tables and can run in a
worker thread without touching the event loop.
"""

from __future__ import annotations

import enum
import json
import math
from typing import Any, Final

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from ..errors import StoreError
from ..records import WorkflowRecord, WorkflowStatus

__all__ = [
    "DOCUMENT_FORMAT",
    "FINISHED_STATUSES",
    "DocumentError",
    "ResultNotStorable",
    "build_document",
    "decode_document",
    "encode_document",
    "encode_for_storage",
    "is_stored_document",
    "read_back",
    "record_from_document",
    "same_outcome",
]

# Bumped only for incompatible changes; readers refuse formats they do not know rather than guess.
DOCUMENT_FORMAT: Final = "notifier.result/1"

# Statuses a document may carry. RUNNING has no result yet; LOST is the index's word for a
# document that is gone, so no document can say it.
FINISHED_STATUSES: Final = frozenset(
    {
        WorkflowStatus.COMPLETED,
        WorkflowStatus.FAILED,
        WorkflowStatus.INTERRUPTED,
        WorkflowStatus.CANCELLED,
    }
)


class DocumentError(StoreError):
    """A result file is not a document this store wrote: invalid JSON, wrong schema or wrong id."""


class ResultNotStorable(StoreError):
    """A workflow's result cannot be JSON at all (a circular reference, nesting deeper than the
    encoder's recursion limit, an integer past Python's 4300-digit limit)."""


class _WorkflowSection(BaseModel):
    """The index row as the document keeps it. Unknown keys are ignored so that an older reader
    can still re-index files written by a newer version of the section."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    command: StrictStr
    user_id: StrictInt
    user_name: StrictStr = ""
    options: dict[StrictStr, StrictStr] = {}
    guild_id: StrictInt | None = None
    channel_id: StrictInt | None = None
    ephemeral: StrictBool = False
    status: WorkflowStatus
    stage: StrictStr = ""
    progress: StrictFloat | StrictInt = 0.0
    created_at: StrictFloat | StrictInt
    finished_at: StrictFloat | StrictInt
    error: StrictStr = ""


def build_document(record: WorkflowRecord, result: dict[str, Any] | None) -> dict[str, Any]:
    """The document for a finished record. `record.finished_at` must be set."""
    return {
        "format": DOCUMENT_FORMAT,
        "workflow_id": record.workflow_id,
        "workflow": {
            "command": record.command,
            "user_id": record.user_id,
            "user_name": record.user_name,
            "options": dict(record.options),
            "guild_id": record.guild_id,
            "channel_id": record.channel_id,
            "ephemeral": record.ephemeral,
            "status": record.status.value,
            "stage": record.stage,
            "progress": record.progress,
            "created_at": record.created_at,
            "finished_at": record.finished_at,
            "error": record.error,
        },
        "result": result,
    }


def _fallback(value: object) -> object:
    # A workflow that returns a datetime or a Decimal must not lose its result over it: such
    # values are kept as their text, which is what a reader would be shown anyway.
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float):  # a float subclass (numpy.float64): orjson asks, json does not
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _finite(value: object) -> object:
    """`value` with NaN and infinities replaced by None, for the rare result that holds them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_finite(item) for item in value]
    return value


# Where orjson.loads may lose an integer (beyond 64 bits, or below -2**63): 19 digits in a row,
# found as nineteen 9s once every digit is a 9 and every other byte a space. The run may as well
# be inside a string or a float's fraction; those just take the standard library's path.
_DIGITS_AS_NINES: Final = bytes(0x39 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGIT_RUN: Final = b"9" * 19

_ORJSON_OPTIONS: Final = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_APPEND_NEWLINE
)


def encode_document(document: dict[str, Any]) -> bytes:
    """Standard JSON (RFC 8259), UTF-8, on one line. Raises ResultNotStorable if the result can not
    be JSON at all (a circular reference, nesting deeper than the encoder's recursion limit).

    What JSON cannot hold: NaN and infinities become null (as JavaScript's ``JSON.stringify`` does;
    the standard library would write a ``NaN`` token that jq and most readers reject), an enum
    member its value, a set or tuple a list, anything else (datetime, Decimal, bytes) its text.

    orjson first: the standard library's C encoder holds the GIL for 0.27 ms per 100 KB result,
    time the event loop and the file writer's thread wait for (BENCHMARKS.md, persistence);
    orjson takes a tenth of it. What orjson refuses (an int beyond 64 bits, a lone surrogate, a
    key that is not a string, nesting deeper than 255) goes to the standard library, with the
    same rules. Not indented, for the same reason: operators read results with ``python -m
    notifier results export ID`` (or ``jq``), which print them indented.
    """
    return _encode(document)[0]


def _encode(document: dict[str, Any]) -> tuple[bytes, bool]:
    """`encode_document`'s bytes, and whether orjson wrote them (then orjson reads them back
    exactly: no integer beyond 64 bits, no lone surrogate)."""
    try:
        return orjson.dumps(document, default=_fallback, option=_ORJSON_OPTIONS), True
    except orjson.JSONEncodeError:
        pass
    return _encode_standard(document), False


def _encode_standard(document: dict[str, Any]) -> bytes:
    value: object = document
    try:
        try:
            text = json.dumps(value, ensure_ascii=False, default=_fallback, allow_nan=False)
        except ValueError as exc:
            if "Out of range float" not in str(exc):
                raise
            value = _finite(value)
            text = json.dumps(value, ensure_ascii=False, default=_fallback, allow_nan=False)
        try:
            return (text + "\n").encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (valid in a JSON escape, not in UTF-8): keep it, escaped.
            text = json.dumps(value, ensure_ascii=True, default=_fallback, allow_nan=False)
            return (text + "\n").encode("ascii")
    except (RecursionError, ValueError, TypeError) as exc:
        raise ResultNotStorable(f"the result cannot be encoded as JSON: {exc}") from exc


def read_back(data: bytes) -> Any:
    """The value stored JSON bytes stand for: the one way the store turns bytes into a document,
    so every reader (and `finish`, which hands the written document back) sees the same values.

    orjson first (a fraction of the standard library's time, and of the GIL with it); the
    standard library for what orjson refuses, which our own encoder can write (an escaped lone
    surrogate, the ``NaN`` tokens of documents written before results became standard JSON), and
    for bytes holding a run of 19 digits or more: orjson reads an integer beyond 64 bits as a
    float without a word, and an exact integer must stay exact. (The digits are found with
    ``bytes.translate`` and ``in``: a regular expression took 0.7 ms per 80 KB.) Raises
    UnicodeDecodeError, ValueError or RecursionError for bytes that are not JSON at all.
    """
    if _LONG_DIGIT_RUN not in data.translate(_DIGITS_AS_NINES):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data.decode("utf-8"))


def encode_for_storage(
    record: WorkflowRecord, result: dict[str, Any] | None
) -> tuple[bytes, dict[str, Any]]:
    """The bytes to write for a finished record, and the document a reader of them will get
    (`read_back`'s values; bytes orjson wrote are read back by orjson without a scan)."""
    data, by_orjson = _encode(build_document(record, result))
    document: dict[str, Any] = orjson.loads(data) if by_orjson else read_back(data)
    return data, document


def decode_document(data: bytes, expected_id: str) -> dict[str, Any]:
    """Parse and check a result file. Raises DocumentError with a reason an operator can act on."""
    try:
        document = read_back(data)
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        raise DocumentError(f"not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise DocumentError(f"not a result document (top level is {type(document).__name__})")
    if document.get("format") != DOCUMENT_FORMAT:
        raise DocumentError(f"unknown format {document.get('format')!r}")
    if document.get("workflow_id") != expected_id:
        raise DocumentError(
            f"workflow_id {document.get('workflow_id')!r} does not match the file name"
        )
    if not isinstance(document.get("result"), dict | None):
        raise DocumentError("result must be an object or null")
    try:
        section = _WorkflowSection.model_validate(document.get("workflow"))
    except ValidationError as exc:
        detail = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in detail["loc"]) or "workflow"
        raise DocumentError(f"workflow.{where}: {detail['msg']}") from None
    if section.status not in FINISHED_STATUSES:
        raise DocumentError(f"status {section.status.value!r} is not a finished status")
    if not (math.isfinite(section.created_at) and math.isfinite(section.finished_at)):
        raise DocumentError("created_at and finished_at must be finite")
    return document


def record_from_document(document: dict[str, Any]) -> WorkflowRecord:
    """The index row a checked document stands for (delivery state pending: documents never say)."""
    section = _WorkflowSection.model_validate(document["workflow"])
    return WorkflowRecord(
        workflow_id=str(document["workflow_id"]),
        command=section.command,
        user_id=section.user_id,
        options=dict(section.options),
        user_name=section.user_name,
        guild_id=section.guild_id,
        channel_id=section.channel_id,
        ephemeral=section.ephemeral,
        status=section.status,
        stage=section.stage,
        progress=float(section.progress),
        created_at=float(section.created_at),
        finished_at=float(section.finished_at),
        error=section.error,
    )


def is_stored_document(value: object) -> bool:
    """True for a document as `decode_document` returns it, False for a bare result dict."""
    return (
        isinstance(value, dict)
        and value.get("format") == DOCUMENT_FORMAT
        and "result" in value
        and "workflow" in value
    )


def same_outcome(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two documents hold the same result, ignoring when each was written.

    Used to make a repeated `finish` idempotent: the same status, error and result is the same
    outcome even if the second call came a second later. NaN and infinities compare as the null
    they are stored as (documents written before that rule hold them as ``NaN`` tokens).
    """
    return bool(
        a["workflow"]["status"] == b["workflow"]["status"]
        and a["workflow"].get("error", "") == b["workflow"].get("error", "")
        and _finite(a["result"]) == _finite(b["result"])
    )
