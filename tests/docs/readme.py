"""Reading README.md the way a person does: its fenced blocks, its sections and its tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language tag (may be empty), its text (indent removed), the line of
    its opening fence, and the `## ` section it is in."""

    lang: str
    text: str
    line: int
    section: str

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0] if self.text else ""


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def blocks(text: str | None = None) -> list[Block]:
    lines = (readme_text() if text is None else text).splitlines()
    found: list[Block] = []
    section = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("## "):
            section = line[3:].strip()
        match = _FENCE.match(line)
        if match is None:
            index += 1
            continue
        indent = len(match.group("indent"))
        body: list[str] = []
        index += 1
        while index < len(lines) and not re.match(r"^[ \t]*```\s*$", lines[index]):
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        found.append(Block(match.group("lang"), "\n".join(body) + "\n", index - len(body), section))
        index += 1
    return found


def block(lang: str, first_line_starts: str) -> Block:
    """The one block of `lang` whose first line starts with the given text."""
    matches = [b for b in blocks() if b.lang == lang and b.first_line.startswith(first_line_starts)]
    assert len(matches) == 1, (
        f"README: {len(matches)} {lang} blocks start with {first_line_starts!r}"
    )
    return matches[0]


def section(title: str) -> str:
    """The text of the `## title` section, without its heading."""
    text = readme_text()
    match = re.search(rf"^## {re.escape(title)}\n(?P<body>.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"README has no section {title!r}"
    return match.group("body")


def table(title: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table in a section, header and rule left out."""
    rows: list[list[str]] = []
    for line in section(title).splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in _split_row(line)]
        rows.append(cells)
    assert len(rows) >= 2, f"README section {title!r} has no table"
    return rows[2:]


def _split_row(line: str) -> list[str]:
    """Split a table row on `|`, but not on a `|` inside backticks."""
    cells: list[str] = []
    current = ""
    in_code = False
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(current)
            current = ""
        else:
            current += char
    cells.append(current)
    return cells


def inline_code(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)
