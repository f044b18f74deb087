"""Request body parsing: JSON, or multipart with ``payload_json`` and files.

Discord accepts files on every message create/edit as ``files[n]`` parts
next to a ``payload_json`` part (nextcord), or as arbitrary file parts with
plain form fields (Apprise and other webhook clients); both end up as one
JSON payload plus a list of uploads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from . import errors

_FILE_INDEX = re.compile(r"^files\[(\d+)\]$|^file(\d*)$")


@dataclass(frozen=True)
class UploadedFile:
    """One uploaded file part; ``index`` is n of ``files[n]`` when given."""

    part_name: str
    filename: str
    content: bytes = field(repr=False)
    content_type: str | None
    index: int | None


@dataclass
class ParsedBody:
    """The request's JSON (``None`` when absent) and its uploaded files."""

    json: Any = None
    files: list[UploadedFile] = field(default_factory=list)

    @property
    def payload(self) -> dict[str, Any]:
        """The JSON body as an object (``{}`` when absent or not an object)."""
        return self.json if isinstance(self.json, dict) else {}


def _decode_json(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise errors.invalid_json() from None


def _coerce_form_value(value: str) -> Any:
    """Form fields are strings; Discord still reads ``tts=true`` or embeds JSON."""
    if value in ("true", "false"):
        return value == "true"
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _file_index(name: str) -> int | None:
    match = _FILE_INDEX.match(name)
    if match is None:
        return None
    digits = match.group(1) or match.group(2)
    return int(digits) if digits else 0


async def parse_body(request: web.Request) -> ParsedBody:
    """Read the whole body; raises 400/50109 for malformed JSON."""
    if not request.can_read_body:
        return ParsedBody()
    if request.content_type.startswith("multipart/"):
        return await _parse_multipart(request)
    raw = await request.read()
    if not raw.strip():
        return ParsedBody()
    return ParsedBody(json=_decode_json(raw))


async def _parse_multipart(request: web.Request) -> ParsedBody:
    reader = await request.multipart()
    payload: dict[str, Any] = {}
    form: dict[str, Any] = {}
    files: list[UploadedFile] = []
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            continue
        name = part.name or ""
        if part.filename is not None:
            content = await part.read(decode=False)
            files.append(
                UploadedFile(
                    part_name=name,
                    filename=part.filename,
                    content=bytes(content),
                    content_type=part.headers.get("Content-Type"),
                    index=_file_index(name),
                )
            )
        elif name == "payload_json":
            decoded = _decode_json(await part.text())
            payload = decoded if isinstance(decoded, dict) else {}
        else:
            form[name] = _coerce_form_value(await part.text())
    return ParsedBody(json={**form, **payload}, files=files)
