"""Drawing a workflow result for Discord (and for the operator CLI), as pure functions.

One renderer for every place that shows a result (the first delivery, the delivery after a restart,
/retrieve_results, the CLI), so a result looks the same wherever it is read. Its input is always
the stored result (`StoredResult`: the record and the document as the store reads it back), never
the dict a workflow returned. No I/O and no Discord calls: the output is plain data, and every
limit Discord enforces (`codes`) is checked here, where a table of tests can see it.

Every piece of text that comes from outside (the result's keys and values, its title, the URL the
user gave, an error a site caused) goes through `_printable`, which makes it `inert`: it can ping
nobody and hide no link behind other words, in the embeds, the list of /results, the Markdown
export and the CLI alike. The JSON export is the stored document, exactly.

Three modes, tried in order:

- ``embeds``: the whole result fits Discord's embed limits without cutting anything;
- ``attachments``: one short embed, plus the full result as ``<id>.json`` and ``<id>.md``;
- ``summary``: one short embed and the command an operator runs to export the result, when even the
  files are too large (per file: `attachment_limit_bytes`, from the interaction's
  ``attachment_size_limit``; in all: the 25 MiB request limit). ``attachment_limit_bytes=0`` asks for
  no files at all (a fallback message that must be small).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from ..records import StoredResult, WorkflowRecord, WorkflowStatus
from . import codes
from .text import inert, without_lone_surrogates

__all__ = [
    "RenderMode",
    "RenderedFile",
    "RenderedResult",
    "export_command",
    "export_json",
    "export_markdown",
    "render_record_list",
    "render_result",
    "render_status_line",
    "rendered_as_text",
    "validate_embeds",
]

RenderMode = Literal["embeds", "attachments", "summary"]

# Room left in the 25 MiB request for the JSON payload (embeds, content) beside the files.
_PAYLOAD_MARGIN_BYTES: Final = 64 * 1024
_SHORT_SUMMARY_CHARS: Final = 1000
_STATUS_LINE_MAX: Final = 200
_URL_IN_LIST_MAX: Final = 60
_COMPACT_DEPTH_MAX: Final = 3
_MARKDOWN_DEPTH_MAX: Final = 8
_EMPTY: Final = "—"
_ELLIPSIS: Final = "…"

_ICONS: Final = {
    WorkflowStatus.RUNNING: "⏳",
    WorkflowStatus.COMPLETED: "✅",
    WorkflowStatus.FAILED: "❌",
    WorkflowStatus.INTERRUPTED: "⏸️",
    WorkflowStatus.CANCELLED: "🚫",
    WorkflowStatus.LOST: "⚠️",
}
_COLOURS: Final = {
    WorkflowStatus.RUNNING: 0x3498DB,
    WorkflowStatus.COMPLETED: 0x2ECC71,
    WorkflowStatus.FAILED: 0xE74C3C,
    WorkflowStatus.INTERRUPTED: 0xF1C40F,
    WorkflowStatus.CANCELLED: 0x95A5A6,
    WorkflowStatus.LOST: 0x992D22,
}
# Keys shown as the embed's title and description rather than as fields.
_TITLE_KEY: Final = "title"
_SUMMARY_KEY: Final = "summary"


@dataclass(frozen=True, slots=True)
class RenderedFile:
    """An attachment: its name and its bytes (fits `notifier.discord.io.FileLike`)."""

    filename: str
    data: bytes

    @property
    def size_bytes(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class RenderedResult:
    """A message ready to send: content, embed dicts as Discord's JSON wants them, files."""

    content: str
    embeds: list[dict[str, Any]]
    files: list[RenderedFile]
    mode: RenderMode


# -- limits -------------------------------------------------------------------------------------


def validate_embeds(embeds: Sequence[dict[str, Any]]) -> list[str]:
    """Every Discord limit these embeds break, as readable lines; empty when they may be sent.

    Counts characters as Python does (code points), the total over title, description, field names
    and values, footer text and author name of all embeds, as Discord does.
    """
    problems: list[str] = []
    if len(embeds) > codes.EMBEDS_PER_MESSAGE_MAX:
        problems.append(f"{len(embeds)} embeds > {codes.EMBEDS_PER_MESSAGE_MAX}")
    total = 0

    def check(where: str, value: object, limit: int, *, required: bool = False) -> None:
        nonlocal total
        if value is None and not required:
            return
        if not isinstance(value, str):
            problems.append(f"{where}: must be text, got {type(value).__name__}")
            return
        if required and not value.strip():
            problems.append(f"{where}: must not be empty")
        if len(value) > limit:
            problems.append(f"{where}: {len(value)} characters > {limit}")
        total += len(value)

    for i, embed in enumerate(embeds):
        where = f"embeds[{i}]"
        if not isinstance(embed, dict):
            problems.append(f"{where}: must be an object")
            continue
        check(f"{where}.title", embed.get("title"), codes.EMBED_TITLE_MAX)
        check(f"{where}.description", embed.get("description"), codes.EMBED_DESCRIPTION_MAX)
        footer = embed.get("footer")
        for part, key, limit in (
            ("footer", "text", codes.EMBED_FOOTER_MAX),
            ("author", "name", codes.EMBED_AUTHOR_MAX),
        ):
            value = embed.get(part)
            if value is None:
                continue
            if isinstance(value, dict):
                check(f"{where}.{part}.{key}", value.get(key), limit)
            else:
                problems.append(f"{where}.{part}: must be an object")
        fields = embed.get("fields") or []
        if len(fields) > codes.EMBED_FIELDS_MAX:
            problems.append(f"{where}: {len(fields)} fields > {codes.EMBED_FIELDS_MAX}")
        for j, field in enumerate(fields):
            if not isinstance(field, dict):
                problems.append(f"{where}.fields[{j}]: must be an object")
                continue
            check(
                f"{where}.fields[{j}].name",
                field.get("name"),
                codes.EMBED_FIELD_NAME_MAX,
                required=True,
            )
            check(
                f"{where}.fields[{j}].value",
                field.get("value"),
                codes.EMBED_FIELD_VALUE_MAX,
                required=True,
            )
        shown = (
            embed.get("title") not in (None, "")
            or embed.get("description") not in (None, "")
            or bool(fields)
            or (isinstance(footer, dict) and footer.get("text") not in (None, ""))
            or bool(embed.get("image") or embed.get("thumbnail"))
        )
        if not shown:
            problems.append(f"{where}: empty embed")
    if total > codes.EMBED_TOTAL_MAX:
        problems.append(f"{total} characters across all embeds > {codes.EMBED_TOTAL_MAX}")
    return problems


# -- small text helpers -------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    """At most `limit` characters; a cut is shown with an ellipsis, never silent."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + _ELLIPSIS


def _printable(text: str) -> str:
    """Outside text as it may be shown: lone surrogates (legal in JSON escapes, not in UTF-8)
    become "?" so the text can be sent, and mentions and masked links are made `inert`."""
    return inert(without_lone_surrogates(text))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _escape_markdown(text: str) -> str:
    # For user-controlled text put inside our own markdown (lists): it must not restyle the line.
    for char in ("\\", "*", "_", "~", "`", "|", ">"):
        text = text.replace(char, "\\" + char)
    return text


def _duration_text(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _age_text(seconds: float) -> str:
    if seconds < 60:
        return "just now"
    for unit_s, unit in ((86_400, "d"), (3600, "h"), (60, "m")):
        if seconds >= unit_s:
            return f"{int(seconds // unit_s)}{unit} ago"
    return "just now"  # pragma: no cover - the loop always returns for seconds >= 60


def _iso(timestamp: float | None) -> str:
    if timestamp is None or not math.isfinite(timestamp):
        return ""
    try:
        return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return ""


_ACRONYMS: Final = {"url": "URL", "urls": "URLs", "id": "ID", "ids": "IDs", "http": "HTTP"}


def _label(key: object) -> str:
    """A result key as a field name: ``pages_analysed`` -> ``Pages analysed``."""
    words = _one_line(_printable(str(key)).replace("_", " ")).split(" ")
    text = " ".join(_ACRONYMS.get(word, word) for word in words)
    if not text:
        return "(unnamed)"
    return text[0].upper() + text[1:]


def _json_compact(value: object) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (ValueError, RecursionError, TypeError):
        return _ELLIPSIS


def _scalar(value: object) -> str | None:
    """A scalar's display text, or None if `value` is a container."""
    if value is None:
        return _EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        # The store holds no NaN, no infinity and no integer past Python's 4300-digit limit:
        # they are null, or refused, once stored, and only stored results are drawn.
        return str(value)
    if isinstance(value, str):
        return _printable(value) if value.strip() else _EMPTY
    if isinstance(value, list | tuple | dict):
        return None
    return _printable(str(value))


def _inline(value: object, depth: int) -> str:
    """One line for a value inside a list or a mapping."""
    text = _scalar(value)
    if text is not None:
        return text
    if depth >= _COMPACT_DEPTH_MAX:
        return _printable(_json_compact(value))
    if isinstance(value, dict):
        return (
            " · ".join(f"{_label(k)}: {_inline(v, depth + 1)}" for k, v in value.items()) or _EMPTY
        )
    items = list(value) if isinstance(value, list | tuple) else []
    if not items:
        return _EMPTY
    # A pair like ["keyword", 12] reads best as "keyword (12)".
    if len(items) >= 2 and all(_scalar(item) is not None for item in items):
        head, *rest = (str(_scalar(item)) for item in items)
        return f"{head} ({', '.join(rest)})"
    return ", ".join(_inline(item, depth + 1) for item in items)


def _compact(value: object) -> str:
    """A field value: scalars as they are, short lists on one line, longer ones as bullets."""
    text = _scalar(value)
    if text is not None:
        return text
    if isinstance(value, dict):
        if not value:
            return _EMPTY
        return "\n".join(f"**{_label(k)}:** {_inline(v, 1)}" for k, v in value.items())
    items = list(value) if isinstance(value, list | tuple) else []
    if not items:
        return _EMPTY
    lines = [_inline(item, 1) for item in items]
    one_line = ", ".join(lines)
    if not any(isinstance(item, dict) for item in items) and len(one_line) <= 200:
        return one_line
    return "\n".join(f"• {line}" for line in lines)


# -- the result ---------------------------------------------------------------------------------


def _title_of(record: WorkflowRecord, result: dict[str, Any] | None) -> str:
    title = result.get(_TITLE_KEY) if result else None
    if isinstance(title, str) and title.strip():
        return _one_line(_printable(title))
    return f"{record.command} · {record.status.value}"


def _url_of(record: WorkflowRecord) -> str | None:
    """The record's URL if Discord will take it as the embed's link (else it would refuse the
    whole message with 50035), or None."""
    url = record.url.strip()
    if len(url) > 512 or any(c.isspace() for c in url) or not url.isascii():
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme in ("http", "https") and parts.hostname else None


def _content_line(record: WorkflowRecord) -> str:
    # Built from our own values only (never the result's text): content is where mentions ping.
    duration = _duration_text(record.duration_s)
    when = f" in {duration}" if duration else ""
    return _clip(
        f"{_ICONS.get(record.status, '')} `{record.command}` {record.status.value}{when} · "
        f"workflow `{record.workflow_id}`",
        codes.CONTENT_MAX,
    )


def _footer(record: WorkflowRecord) -> dict[str, str]:
    parts = [f"workflow {record.workflow_id}", record.command]
    if duration := _duration_text(record.duration_s):
        parts.append(duration)
    return {"text": _clip(" · ".join(parts), codes.EMBED_FOOTER_MAX)}


def _base_embed(record: WorkflowRecord, title: str) -> dict[str, Any]:
    embed: dict[str, Any] = {
        "title": title,
        "color": _COLOURS.get(record.status, 0),
    }
    if url := _url_of(record):
        embed["url"] = url
    if stamp := _iso(record.finished_at):
        embed["timestamp"] = stamp
    return embed


def _full_embeds(
    record: WorkflowRecord, result: dict[str, Any] | None
) -> list[dict[str, Any]] | None:
    """The whole result as embeds, or None if any part would have to be cut to fit."""
    title = f"{_ICONS.get(record.status, '')} {_title_of(record, result)}".strip()
    if len(title) > codes.EMBED_TITLE_MAX:
        return None
    description_parts: list[str] = []
    if result and _SUMMARY_KEY in result:
        description_parts.append(_compact(result[_SUMMARY_KEY]))
    if record.error:
        description_parts.append(f"**Error:** {_printable(record.error)}")
    description = "\n\n".join(description_parts)
    if len(description) > codes.EMBED_DESCRIPTION_MAX:
        return None
    fields: list[dict[str, Any]] = []
    for key, value in (result or {}).items():
        if key in (_SUMMARY_KEY,) or (
            key == _TITLE_KEY and isinstance(value, str) and value.strip()
        ):
            continue
        name, text = _label(key), _compact(value)
        if len(name) > codes.EMBED_FIELD_NAME_MAX or len(text) > codes.EMBED_FIELD_VALUE_MAX:
            return None
        fields.append({"name": name, "value": text, "inline": _scalar(value) is not None})
    pages = [
        fields[i : i + codes.EMBED_FIELDS_MAX]
        for i in range(0, len(fields), codes.EMBED_FIELDS_MAX)
    ]
    if len(pages) > codes.EMBEDS_PER_MESSAGE_MAX:
        return None
    first = _base_embed(record, title)
    if description:
        first["description"] = description
    embeds = [first]
    if pages:
        first["fields"] = pages[0]
        embeds.extend({"color": first["color"], "fields": page} for page in pages[1:])
    embeds[-1]["footer"] = _footer(record)
    if validate_embeds(embeds):
        return None
    return embeds


def _short_embed(
    record: WorkflowRecord, result: dict[str, Any] | None, note: str
) -> dict[str, Any]:
    """Title, status, URL, duration, a clipped summary and `note`; within every limit by design."""
    title = _clip(
        f"{_ICONS.get(record.status, '')} {_title_of(record, result)}".strip(),
        codes.EMBED_TITLE_MAX,
    )
    embed = _base_embed(record, title)
    parts: list[str] = []
    if result and _SUMMARY_KEY in result:
        parts.append(_clip(_compact(result[_SUMMARY_KEY]), _SHORT_SUMMARY_CHARS))
    if record.error:
        parts.append(_clip(f"**Error:** {_one_line(_printable(record.error))}", 500))
    parts.append(_clip(note, 1000))
    embed["description"] = _clip("\n\n".join(parts), codes.EMBED_DESCRIPTION_MAX)
    fields = [{"name": "Status", "value": record.status.value, "inline": True}]
    if duration := _duration_text(record.duration_s):
        fields.append({"name": "Duration", "value": duration, "inline": True})
    if record.url.strip():
        shown_url = _one_line(_printable(record.url))
        fields.append({"name": "URL", "value": _clip(shown_url, 500), "inline": False})
    embed["fields"] = fields
    embed["footer"] = _footer(record)
    return embed


def export_command(workflow_id: str) -> str:
    """How an operator gets a result that is too large for Discord."""
    return f"python -m notifier results export {workflow_id}"


def render_result(
    stored: StoredResult,
    *,
    attachment_limit_bytes: int = codes.ATTACHMENT_SIZE_DEFAULT_BYTES,
) -> RenderedResult:
    """Draw a stored result as a Discord message, choosing the richest mode that fits (module
    docstring). Never raises for any document the store returns."""
    record, result = stored.record, stored.result
    content = _printable(_content_line(record))
    embeds = _full_embeds(record, result)
    if embeds is not None:
        return RenderedResult(content, without_lone_surrogates(embeds), [], "embeds")
    files = _export_files(stored) if attachment_limit_bytes > 0 else []
    fits = (
        bool(files)
        and all(f.size_bytes <= attachment_limit_bytes for f in files)
        and sum(f.size_bytes for f in files) <= codes.REQUEST_SIZE_MAX_BYTES - _PAYLOAD_MARGIN_BYTES
    )
    if fits:
        names = " and ".join(f"`{f.filename}`" for f in files)
        note = f"The full result is attached as {names}."
        embed = without_lone_surrogates(_short_embed(record, result, note))
        return RenderedResult(content, [embed], files, "attachments")
    note = (
        "The full result is too large to show here. It is stored; an operator can export it with "
        f"`{export_command(record.workflow_id)}`."
    )
    embed = without_lone_surrogates(_short_embed(record, result, note))
    return RenderedResult(content, [embed], [], "summary")


def _export_files(stored: StoredResult) -> list[RenderedFile]:
    workflow_id = stored.record.workflow_id
    return [
        RenderedFile(f"{workflow_id}.json", export_json(stored).encode("utf-8")),
        RenderedFile(f"{workflow_id}.md", export_markdown(stored).encode("utf-8", "replace")),
    ]


# -- exports (attachments and the CLI) ----------------------------------------------------------


def export_json(stored: StoredResult) -> str:
    """The stored document as indented JSON."""
    document, record = stored.document, stored.record
    try:
        text = json.dumps(document, ensure_ascii=False, indent=2, default=str) + "\n"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # Lone surrogates: escaped, so the file stays valid UTF-8 and round-trips exactly.
            text = json.dumps(document, ensure_ascii=True, indent=2, default=str) + "\n"
        return text
    except (ValueError, RecursionError, TypeError):
        return (
            json.dumps({"workflow_id": record.workflow_id, "error": "result not encodable"}) + "\n"
        )


def _md_lines(value: object, indent: int, depth: int) -> list[str]:
    pad = "  " * indent
    text = _scalar(value)
    if text is not None:
        lines = text.splitlines() or [text]
        return [f"{pad}{lines[0]}"] + [f"{pad}  {line}" for line in lines[1:]]
    if depth >= _MARKDOWN_DEPTH_MAX:
        return [f"{pad}`{_printable(_json_compact(value))}`"]
    out: list[str] = []
    if isinstance(value, dict):
        if not value:
            return [f"{pad}{_EMPTY}"]
        for key, item in value.items():
            inner = _scalar(item)
            if inner is not None:
                first, *rest = inner.splitlines() or [inner]
                out.append(f"{pad}- **{_label(key)}:** {first}")
                out.extend(f"{pad}  {line}" for line in rest)
            else:
                out.append(f"{pad}- **{_label(key)}:**")
                out.extend(_md_lines(item, indent + 1, depth + 1))
        return out
    items = list(value) if isinstance(value, list | tuple) else []
    if not items:
        return [f"{pad}{_EMPTY}"]
    if table := _md_table(items, pad):
        return table
    for item in items:
        flat = isinstance(item, list | tuple) and all(_scalar(i) is not None for i in item)
        if _scalar(item) is not None or flat or depth + 1 >= _COMPACT_DEPTH_MAX:
            first, *rest = _inline(item, depth + 1).splitlines() or [""]
            out.append(f"{pad}- {first}")
            out.extend(f"{pad}  {line}" for line in rest)
        else:
            out.append(f"{pad}-")
            out.extend(_md_lines(item, indent + 1, depth + 1))
    return out


def _md_table(items: list[object], pad: str) -> list[str]:
    """A list of flat records (``pages``) as a Markdown table, or [] if it is not one."""
    if not all(isinstance(item, dict) and item for item in items):
        return []
    rows: list[dict[Any, Any]] = [item for item in items if isinstance(item, dict)]
    if not all(_scalar(v) is not None for row in rows for v in row.values()):
        return []
    keys = list(dict.fromkeys(k for row in rows for k in row))

    def cell(value: object) -> str:
        return _one_line(str(_scalar(value))).replace("|", "\\|")

    lines = [
        pad + "| " + " | ".join(cell(_label(k)) for k in keys) + " |",
        pad + "|" + "---|" * len(keys),
    ]
    lines += [pad + "| " + " | ".join(cell(row.get(k, "")) for k in keys) + " |" for row in rows]
    return lines


def export_markdown(stored: StoredResult) -> str:
    """A readable report of the result: metadata, then the summary, then one section per key."""
    record, result = stored.record, stored.result
    lines = [f"# {_ICONS.get(record.status, '')} {_title_of(record, result)}".rstrip(), ""]
    meta = [
        ("Workflow", f"`{record.workflow_id}`"),
        ("Command", _printable(record.command)),
        (
            "Options",
            _printable(", ".join(f"{k}={v}" for k, v in sorted(record.options.items()))),
        ),
        ("Status", record.status.value),
        (
            "User",
            f"{_printable(record.user_name)} ({record.user_id})"
            if record.user_name
            else str(record.user_id),
        ),
        ("Started", _iso(record.created_at)),
        ("Finished", _iso(record.finished_at)),
        ("Duration", _duration_text(record.duration_s)),
        ("Error", _one_line(_printable(record.error))),
    ]
    lines.extend(f"- **{name}:** {value}" for name, value in meta if value)
    if result and _SUMMARY_KEY in result:
        lines += ["", "## Summary", "", *_md_lines(result[_SUMMARY_KEY], 0, 0)]
    for key, value in (result or {}).items():
        if key == _SUMMARY_KEY or (key == _TITLE_KEY and isinstance(value, str) and value.strip()):
            continue
        lines += ["", f"## {_label(key)}", "", *_md_lines(value, 0, 0)]
    if result is None:
        lines += ["", "_No result was stored for this workflow._"]
    return "\n".join(lines) + "\n"


# -- lists --------------------------------------------------------------------------------------


def render_status_line(record: WorkflowRecord, *, now: float | None = None) -> str:
    """One line for a list: short id, status, command, URL, age (at most 200 characters)."""
    current = time.time() if now is None else now
    parts = [
        f"{_ICONS.get(record.status, '')} `{record.workflow_id[:8]}`",
        f"**{record.status.value}**",
        f"/{_escape_markdown(_one_line(_printable(record.command)))}",
    ]
    if url := _one_line(_printable(record.url)):
        parts.append(_escape_markdown(_clip(url, _URL_IN_LIST_MAX)))
    parts.append(_age_text(max(0.0, current - record.created_at)))
    return _clip(" · ".join(parts), _STATUS_LINE_MAX)


def render_record_list(
    records: Sequence[WorkflowRecord],
    page: int,
    total: int,
    page_size: int,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """The /results embed: one status line per record (given newest first), `page` counted from 1."""
    pages = max(1, math.ceil(max(0, total) / max(1, page_size)))
    lines: list[str] = []
    used = 0
    for index, record in enumerate(records):
        line = render_status_line(record, now=now)
        more = f"… and {len(records) - index} more"
        if used + len(line) + 1 > codes.EMBED_DESCRIPTION_MAX - len(more) - 1:
            lines.append(more)
            break
        lines.append(line)
        used += len(line) + 1
    noun = "result" if total == 1 else "results"
    return {
        "title": "Your results",
        "description": "\n".join(lines) if lines else "No results yet.",
        "color": 0x5865F2,
        "footer": {"text": f"Page {max(1, page)} of {pages} · {max(0, total)} {noun}"},
    }


def rendered_as_text(rendered: RenderedResult) -> str:
    """A rendered message as plain text, for a terminal (the CLI's `results show`)."""
    lines = [f"[{rendered.mode}] {rendered.content}"]
    for embed in rendered.embeds:
        if title := embed.get("title"):
            lines.append(str(title))
        if description := embed.get("description"):
            lines.append(str(description))
        for field in embed.get("fields") or []:
            value = str(field.get("value", ""))
            if "\n" in value:
                lines.append(f"{field.get('name')}:")
                lines.extend(f"  {line}" for line in value.splitlines())
            else:
                lines.append(f"{field.get('name')}: {value}")
        if footer := (embed.get("footer") or {}).get("text"):
            lines.append(str(footer))
    lines.extend(f"attachment: {f.filename} ({f.size_bytes} bytes)" for f in rendered.files)
    return "\n".join(lines)
