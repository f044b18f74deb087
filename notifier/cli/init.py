"""`notifier init [DIR]`: write the commented config.yaml into DIR, for an installed bot.

The file written is the project's own `config.yaml`, every key explained and set to its default:
an installed copy carries it as `notifier/cli/config.yaml` (setup.py copies it there at build
time), a source checkout reads it from the top of the tree. It is never written over an existing
file: an operator's config holds choices that no default may replace, so an existing
`DIR/config.yaml` is refused in one line (exit 2) and left as it was.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..config import Settings
from .common import EXIT_OK, EXIT_USAGE, CommandError

if TYPE_CHECKING:
    from .common import SubParsers

__all__ = ["STARTER_CONFIG", "register"]

_PACKAGE: Final = Path(__file__).resolve().parents[1]
_CONFIG_NAME: Final = "config.yaml"


def _starter_config() -> Path:
    """The packaged copy of config.yaml, or in a source checkout (no copy made) the tree's own."""
    packaged = Path(__file__).resolve().parent / _CONFIG_NAME
    checkout = _PACKAGE.parent / _CONFIG_NAME
    if not packaged.is_file() and (_PACKAGE.parent / "pyproject.toml").is_file():
        return checkout
    return packaged


STARTER_CONFIG: Final = _starter_config()


def register(subparsers: SubParsers) -> None:
    """`notifier init [DIR]`."""
    parser = subparsers.add_parser(
        "init",
        help="write a commented config.yaml to start from",
        description=(
            "Write the commented config.yaml (every key with its default) into DIR; an existing "
            "config.yaml is never overwritten."
        ),
    )
    parser.add_argument(
        "dir",
        nargs="?",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="folder to write config.yaml into, created if missing (default: this folder)",
    )
    command = parser.prog.rsplit(" ", 1)[0]  # "notifier" or "python -m notifier"

    async def handler(args: argparse.Namespace, _defaults: Settings) -> int:
        return write_config(args.dir, command=command)

    parser.set_defaults(handler=handler, load_settings=False)


def write_config(folder: Path, *, command: str = "notifier") -> int:
    """Write STARTER_CONFIG to `folder/config.yaml` and say what to do next; refuse to overwrite."""
    target = folder.absolute() / _CONFIG_NAME  # the commands printed work from any folder
    try:
        text = STARTER_CONFIG.read_bytes()
    except OSError as exc:
        raise CommandError(f"the packaged config.yaml cannot be read ({exc.strerror})") from None
    if folder.exists() and not folder.is_dir():
        raise CommandError(f"{folder} is not a folder", EXIT_USAGE)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # O_EXCL: an existing file (or a link where the file would go) is never written through.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise CommandError(
            f"{target} already exists; it was left as it is (move it away, or pick another DIR)",
            EXIT_USAGE,
        ) from None
    except OSError as exc:
        where = exc.filename if exc.filename else target
        raise CommandError(f"cannot write {where}: {exc.strerror}", EXIT_USAGE) from None
    with os.fdopen(fd, "wb") as out:
        out.write(text)
    shown = shlex.quote(str(target))
    print(f"wrote {target}: every key commented, each set to its default")
    print("next:")
    print("  1. set DISCORD_TOKEN to your bot's token in the environment (never in config.yaml)")
    print(f"  2. {command} config check --config {shown}")
    print(f"  3. {command} run --config {shown}")
    print(f"  (no Discord token yet? {command} demo plays the whole story on this machine)")
    sys.stdout.flush()
    return EXIT_OK
