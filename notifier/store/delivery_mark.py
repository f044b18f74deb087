"""A result's delivery mark: ``results/<id>.delivered``, so that delivery state lives with the result.

Why a file beside the document: documents are written once and never rewritten (they cannot say
"delivered", which happens after the write), and the index, which does say it, can be lost (the
file deleted, or moved to quarantine when damaged) and rebuilt from the files. A rebuilt index that
knew only the documents would deliver every result again: up to `retention_days` of results
re-posted in channels. The mark is written (fsynced, renamed into place, folder fsynced, through
`file_writer`) when the store records a delivery, right after the index row; reconciliation reads
it when it re-indexes a result, and when a row says "pending" beside a mark (the row's update
failed, or the index came back from an older copy); retention removes it with the result.

Pure functions only, as `document`: the store decides what to write, `file_writer` writes it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Final

from ..records import DeliveryState
from .document import DocumentError

__all__ = ["MARK_FORMAT", "DeliveryMark", "decode_mark", "encode_mark"]

MARK_FORMAT: Final = "notifier.delivered/1"
_VIA_CHARS_MAX: Final = 1_000  # a rung's name, or an undeliverable reason
_MARK_BYTES_MAX: Final = 4_096
_STATES: Final = frozenset({DeliveryState.DELIVERED, DeliveryState.UNDELIVERABLE})


@dataclass(frozen=True, slots=True)
class DeliveryMark:
    """What a mark says: the delivery state, the rung (or the reason it failed) and when."""

    state: DeliveryState
    via: str
    at: float


def encode_mark(workflow_id: str, mark: DeliveryMark) -> bytes:
    """The mark's file content: one line of JSON naming its workflow (checked on reading)."""
    if mark.state not in _STATES:
        raise ValueError(f"a delivery mark records a decided delivery, not {mark.state.value!r}")
    body = {
        "format": MARK_FORMAT,
        "workflow_id": workflow_id,
        "state": mark.state.value,
        "via": mark.via[:_VIA_CHARS_MAX],
        "at": mark.at,
    }
    return (json.dumps(body, ensure_ascii=True) + "\n").encode("ascii")


def decode_mark(data: bytes, expected_id: str) -> DeliveryMark:
    """Parse and check a mark; DocumentError with the reason if it is not one this store wrote."""
    if len(data) > _MARK_BYTES_MAX:
        raise DocumentError(f"a delivery mark of {len(data)} bytes is not one this store wrote")
    try:
        body = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DocumentError(f"delivery mark is not JSON ({exc})") from None
    if not isinstance(body, dict) or body.get("format") != MARK_FORMAT:
        raise DocumentError("not a delivery mark")
    if body.get("workflow_id") != expected_id:
        raise DocumentError("delivery mark's workflow_id does not match the file name")
    try:
        state = DeliveryState(str(body.get("state")))
    except ValueError:
        raise DocumentError(f"delivery mark has an unknown state {body.get('state')!r}") from None
    via, at = body.get("via"), body.get("at")
    if state not in _STATES or not isinstance(via, str):
        raise DocumentError("delivery mark has no decided state or no rung")
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise DocumentError("delivery mark has no valid time")
    return DeliveryMark(state, via, float(at))
