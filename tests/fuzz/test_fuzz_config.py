"""Fuzzing `config.yaml` loading: any document is either valid Settings or ONE line of error.

Three generators, 500 examples each:

* structures over the real section and key names (read from the pydantic models, so a new key is
  fuzzed without touching this file) with plausible and random values, dumped by pyyaml;
* raw YAML text assembled from tricky plain scalars, anchors/aliases and tags, the inputs pyyaml's
  resolver turns into ints, dates and floats (and where its constructors raise plain ValueError);
* byte-level mutations of the shipped example `config.yaml` (drop, insert, flip, and a value
  swapped for one of another type), read from a file by `load_config`, the function bot.py uses.

A few of the documents these found are then given to `bot.py` itself as a subprocess: exit status
2, one line on stderr, no traceback. (A *valid* document would start the demo, so only invalid
ones are run that way; valid ones are checked in-process with the same `load_config`.)
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel

from notifier.config import NotifierEntry, Settings, load_config, parse_config, secret_values
from notifier.errors import ConfigError
from notifier.events import Event

from .conftest import FUZZ

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "config.yaml").read_bytes()
ENVIRONMENTS = [
    {},
    {"DISCORD_TOKEN": "MTIz.fuzz.token-value-that-is-long-enough-xx", "SMTP_PASSWORD": "pw"},
    {"DISCORD_TOKEN": "", "DISCORD_API_BASE": "http://127.0.0.1:1/api/v10"},
]


# ---------------------------------------------------------------------------------------------
# The property


def check_outcome(load: Any) -> Settings | ConfigError:
    """Run `load()`; it must return Settings or raise a ConfigError that reads as one line.

    Anything else (a traceback in bot.py) fails the test with the exception itself.
    """
    try:
        settings = load()
    except ConfigError as error:
        text = str(error)
        assert text.strip(), "an empty error message"
        assert len(text.splitlines()) == 1, f"not one line: {text!r}"
        assert len(f"error: {text}".splitlines()) == 1  # what bot.py prints
        return error
    assert isinstance(settings, Settings)
    check_usable(settings)
    return settings


def check_usable(settings: Settings) -> None:
    """A valid config is one bot.py can act on: no value that only fails later, at use."""
    assert settings.discord.api_base.startswith(("http://", "https://"))
    assert not any(c.isspace() for c in settings.discord.api_base)
    paths = [settings.storage.path, *settings.fanout.plugin_dirs]
    paths += [p for p in (settings.logging.file, settings.fanout.outbox_path) if p is not None]
    assert all("\x00" not in str(p) for p in paths)
    for number in (
        settings.discord.interaction_ttl,
        settings.storage.retention_days,
        settings.fanout.timeout,
    ):
        assert number > 0
    assert settings.discord.handoff_before + settings.discord.safety_margin < (
        settings.discord.interaction_ttl
    )
    assert len({n.name for n in settings.notifiers}) == len(settings.notifiers)
    secret_values(settings)  # walks every notifier option; must not choke on any of them


# ---------------------------------------------------------------------------------------------
# 1. Structures over the real names


def _default(field: Any) -> Any:
    if field.default_factory is not None:
        return field.default_factory()
    return field.default


def _sections() -> dict[str, dict[str, Any]]:
    """section -> {key: default} for every section model of Settings."""
    sections: dict[str, dict[str, Any]] = {}
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            sections[name] = {k: _default(f) for k, f in model.model_fields.items()}
    return sections


SECTIONS = _sections()
NOTIFIER_KEYS = list(NotifierEntry.model_fields)
EVENTS = [e.value for e in Event]

TRICKY_TEXT = st.sampled_from(
    [
        "", " ", "${DISCORD_TOKEN}", "${UNSET_VAR}", "${UNSET_VAR:-fallback}", "$$", "${", "}",
        "http://127.0.0.1:8080/api", "https://discord.com/api/v10/", "ftp://x", "http://a b",
        "127.0.0.1:9108", "localhost:0", "[::1]:9108", ":80", "INFO", "debug", "started",
        "completed", "plugins", "data", "a\x00b", "line\nbreak", "tab\there", "\u2028", "é",
        "💥", "0", "-1", "1e400", "nan", "true", "yes", "on", "~", "null", "[]", "{}",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    st.text(max_size=20),
    TRICKY_TEXT,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), TRICKY_TEXT), inner, max_size=4),
    ),
    max_leaves=10,
)


def _plausible(default: Any) -> st.SearchStrategy[Any]:
    """Values of the same type as the key's default: these often make a valid document."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(min_value=-2, max_value=50)
    if isinstance(default, float):
        return st.one_of(
            st.floats(min_value=-1, max_value=1e5, allow_nan=False), st.sampled_from([0.0, 900.0])
        )
    if isinstance(default, str | Path):
        return st.one_of(st.text(max_size=12), TRICKY_TEXT)
    if isinstance(default, tuple):
        return st.lists(st.one_of(st.integers(0, 2**64), st.text(max_size=8)), max_size=3)
    if isinstance(default, dict):
        return st.dictionaries(
            st.text(max_size=8), st.one_of(st.integers(0, 50), st.floats(0, 100)), max_size=3
        )
    return VALUES


@st.composite
def sections(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(sorted(SECTIONS)), unique=True, max_size=5)):
        keys = SECTIONS[name]
        chosen = draw(st.lists(st.sampled_from(sorted(keys)), unique=True, max_size=4))
        section: dict[str, Any] = {
            key: draw(st.one_of(_plausible(keys[key]), VALUES)) for key in chosen
        }
        if draw(st.integers(0, 9)) == 0:
            section[draw(st.text(min_size=1, max_size=10))] = draw(VALUES)  # an unknown key
        document[name] = section if draw(st.integers(0, 15)) else draw(VALUES)
    return document


NOTIFIER_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True), st.text(max_size=6)),
    "plugin": st.sampled_from(["apprise", "email", "dm", "discord_webhook", "nope", ""]),
    "on": st.one_of(
        st.lists(st.sampled_from([*EVENTS, "complete", ""]), max_size=3),
        st.sampled_from(EVENTS),
        VALUES,
    ),
    "enabled": st.one_of(st.booleans(), VALUES),
    "filter": st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "guild_ids": st.lists(st.integers(0, 2**64), max_size=2),
                "commands": st.lists(st.text(max_size=5), max_size=2),
                "user_ids": VALUES,
            },
        ),
        VALUES,
    ),
    "templates": st.one_of(
        st.dictionaries(
            st.sampled_from([*EVENTS, "nope"]),
            st.fixed_dictionaries(
                {}, optional={"title": st.text(max_size=10), "body": st.text(max_size=10)}
            ),
            max_size=2,
        ),
        VALUES,
    ),
    "options": st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "urls": st.lists(
                    st.sampled_from(
                        [
                            "mailto://bot:${SMTP_PASSWORD}@smtp.example.com?to=ops@example.com",
                            "json://user:pw@127.0.0.1:1/x",
                            "discord://1/abcdefghijklmnopqrstuvwxyz",
                        ]
                    ),
                    max_size=2,
                ),
                "token": st.text(max_size=20),
                "password": TRICKY_TEXT,
            },
        ),
        VALUES,
    ),
}


@st.composite
def notifiers(draw: st.DrawFn) -> list[Any]:
    entries: list[Any] = []
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.integers(0, 12)) == 0:
            entries.append(draw(VALUES))
            continue
        keys = draw(st.lists(st.sampled_from(NOTIFIER_KEYS), unique=True, min_size=2, max_size=6))
        entry = {key: draw(NOTIFIER_VALUES[key]) for key in keys}
        if draw(st.integers(0, 9)) == 0:
            entry[draw(st.text(min_size=1, max_size=6))] = draw(VALUES)
        entries.append(entry)
    return entries


@st.composite
def structured_documents(draw: st.DrawFn) -> str:
    document = draw(sections())
    if draw(st.booleans()):
        document["notifiers"] = draw(notifiers())
    if draw(st.integers(0, 20)) == 0:
        document[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)  # an unknown section
    top: Any = document if draw(st.integers(0, 30)) else draw(VALUES)  # not even a mapping
    try:
        return yaml.safe_dump(
            top,
            allow_unicode=draw(st.booleans()),
            default_flow_style=draw(st.sampled_from([False, True, None])),
            sort_keys=False,
        )
    except yaml.YAMLError:  # pyyaml cannot write every Python string; not what is tested here
        assume(False)
        raise


@given(document=structured_documents(), env=st.sampled_from(ENVIRONMENTS))
@FUZZ
def test_documents_over_the_real_keys_load_or_fail_in_one_line(
    document: str, env: dict[str, str]
) -> None:
    check_outcome(lambda: parse_config(document, env=env, source="config.yaml"))


# ---------------------------------------------------------------------------------------------
# 2. Raw YAML text: what the resolver reads as ints, dates, floats, aliases and tags

PLAIN_SCALARS = [
    "1", "-0", "0x1F", "0x_", "0o17", "0o8", "017", "0b101", "0b", "1_000", "1:20", "190:20:30",
    "9" * 5000, "-" + "9" * 4400, "1.5", ".5", "1e5", "1.0e+400", ".inf", "-.Inf", ".nan", "~",
    "null", "true", "False", "yes", "no", "on", "off", "2001-12-14", "2001-13-45", "2001-02-30",
    "2001-12-14t21:59:43.10-05:00", "2001-12-14 25:61:61", "0000-00-00", "<<", "=", "'quoted'",
    '"dq\\x41"', '"\\ud800"', '"\\N"', "!!binary '@@'", "!!binary aGk=", "!!int '12'",
    "!!float 'x'", "!!timestamp 'x'", "!!bool maybe", "!!int ''", "!!int '-'", "!!float ''", "!!set {a, b}", "!!omap [a: 1]", "!!pairs [a: 1]",
    "!!str 1", "!!python/object:os.system x", "!foo bar", "&x 1", "*x", "*missing", "&r [*r]",
    "&m {k: *m}", "[*x, *x]", "{<<: *x}", "? [a, b]", "|", ">-", "'unterminated", "[", "{",
    "]", "}", "- -", "@", "`", "%YAML 1.1", "---", "...", "#", "a: b: c",
    "${DISCORD_TOKEN}", "${NOPE}", "${NOPE:-x}", "http://x", "\u2028", "\u0085", "\t",
]  # fmt: skip
KEYS = [*SECTIONS, "notifiers", "name", "plugin", "on", "options", "urls", "<<", "? a", "x"]
for _section in SECTIONS.values():
    KEYS.extend(_section)


@st.composite
def raw_documents(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 12))):
        indent = " " * draw(st.sampled_from([0, 0, 2, 4, 1]))
        key = draw(st.sampled_from(KEYS))
        value = draw(st.one_of(st.sampled_from(PLAIN_SCALARS), st.just(""), st.text(max_size=6)))
        shape = draw(st.integers(0, 4))
        if shape == 0:
            lines.append(f"{indent}{key}: {value}")
        elif shape == 1:
            lines.append(f"{indent}- {value}")
        elif shape == 2:
            lines.append(f"{indent}{key}: [{value}, {draw(st.sampled_from(PLAIN_SCALARS))}]")
        elif shape == 3:
            lines.append(f"{indent}{key}: {{{draw(st.sampled_from(KEYS))}: {value}}}")
        else:
            lines.append(f"{indent}{key}:")
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n", "\n...\n"]))


@given(document=raw_documents(), env=st.sampled_from(ENVIRONMENTS))
@FUZZ
def test_raw_yaml_text_loads_or_fails_in_one_line(document: str, env: dict[str, str]) -> None:
    check_outcome(lambda: parse_config(document, env=env, source="config.yaml"))


# ---------------------------------------------------------------------------------------------
# 3. Mutations of the example config.yaml, through load_config (a file, as bot.py reads it)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    # Module-scoped: hypothesis runs every example with the same fixture values.
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as folder:
        yield Path(folder)


MUTATION = st.tuples(
    st.sampled_from(["drop", "insert", "flip", "replace"]),
    st.integers(0, len(EXAMPLE) - 1),
    st.binary(min_size=1, max_size=3),
    st.integers(0, 7),
)


def mutate(data: bytes, mutations: list[tuple[str, int, bytes, int]]) -> bytes:
    buffer = bytearray(data)
    for kind, position, chunk, bit in mutations:
        if not buffer:
            buffer.extend(chunk)
            continue
        at = position % len(buffer)
        if kind == "drop":
            del buffer[at : at + len(chunk)]
        elif kind == "insert":
            buffer[at:at] = chunk
        elif kind == "flip":
            buffer[at] ^= 1 << bit
        else:
            buffer[at : at + len(chunk)] = chunk
    return bytes(buffer)


# Leaf values of the example as parsed, by path; "swap types" replaces one with another type.
def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))
        if not node:
            yield path
    else:
        yield path


EXAMPLE_TREE = yaml.safe_load(EXAMPLE)
LEAVES = sorted(_leaves(EXAMPLE_TREE), key=repr)
SWAPS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def swapped(path: tuple[Any, ...], value: Any) -> bytes:
    tree = yaml.safe_load(EXAMPLE)
    node = tree
    for part in path[:-1]:
        node = node[part]
    if path:
        node[path[-1]] = value
    else:
        tree = value
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True).encode("utf-8")


@st.composite
def mutated_examples(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 3)) == 0:
        base = swapped(draw(st.sampled_from(LEAVES)), draw(SWAPS))
    else:
        base = EXAMPLE
    return mutate(base, draw(st.lists(MUTATION, max_size=4)))


@given(data=mutated_examples(), env=st.sampled_from(ENVIRONMENTS))
@FUZZ
def test_mutations_of_the_example_config_load_or_fail_in_one_line(
    scratch: Path, data: bytes, env: dict[str, str]
) -> None:
    path = scratch / "config.yaml"
    path.write_bytes(data)
    check_outcome(lambda: load_config(path, env=env))


def test_the_unmutated_example_is_valid() -> None:
    for env in ENVIRONMENTS:
        outcome = check_outcome(lambda env=env: parse_config(EXAMPLE.decode(), env=env))
        assert isinstance(outcome, Settings)


# ---------------------------------------------------------------------------------------------
# Documents fuzzing found (each was a traceback or a multi-line error), pinned, and given to
# bot.py as a subprocess.

FOUND = {
    "alias-cycle": "discord: &d {x: *d}\n",
    "alias-cycle-in-options": (
        "notifiers: [&n {name: a, plugin: dm, on: [started], options: {x: *n}}]\n"
    ),
    "integer-past-4300-digits": "runner:\n  max_concurrent: " + "9" * 5000 + "\n",
    "impossible-date": "storage:\n  path: 2001-13-45\n",
    "hex-without-digits": "runner:\n  max_per_user: 0x_\n",
    "newline-in-a-key": '"disc\\nord":\n  token: x\n',
    "line-separator-in-a-key": 'discord: {"a\\u2028b": 1}\n',
    "nul-in-a-path": 'storage:\n  path: "data\\0x"\n',
    "newline-in-api-base": 'discord:\n  api_base: "http://127.0.0.1/\\nx"\n',
    "explicit-timestamp-tag": "discord: !!timestamp 'x'\n",
    "explicit-bool-tag": "autointel:\n  allow_private_networks: !!bool maybe\n",
    "explicit-int-tag-empty": "runner:\n  max_per_user: !!int ''\n",
    "nested-too-deeply": "a: " + "[" * 2000 + "]" * 2000 + "\n",
    "alias-bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(6)
    ),
}


@pytest.mark.parametrize("document", list(FOUND.values()), ids=list(FOUND))
def test_documents_fuzzing_found_are_one_line_errors(document: str) -> None:
    outcome = check_outcome(lambda: parse_config(document, env={}, source="config.yaml"))
    assert isinstance(outcome, ConfigError)


# The whole environment bot.py sees, so the in-process check reads the documents the same way.
BOT_ENV = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}


def _bot_py(config: Path) -> subprocess.CompletedProcess[str]:
    env = dict(BOT_ENV)
    return subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=config.parent,
        env=env,
        check=False,
    )


def test_bot_py_prints_one_line_and_exits_2_for_documents_fuzzing_found(tmp_path: Path) -> None:
    documents = {name: text.encode("utf-8") for name, text in FOUND.items()}
    # Plus mutations of the example that load_config refuses (a fixed, reproducible handful).
    rng = random.Random(6)
    while len(documents) < len(FOUND) + 4:
        mutations = [
            (
                rng.choice(["drop", "insert", "flip"]),
                rng.randrange(len(EXAMPLE)),
                b":",
                rng.randrange(8),
            )
            for _ in range(3)
        ]
        data = mutate(EXAMPLE, mutations)
        probe = tmp_path / "probe.yaml"
        probe.write_bytes(data)
        if isinstance(
            check_outcome(lambda probe=probe: load_config(probe, env=BOT_ENV)), ConfigError
        ):
            documents[f"mutation-{len(documents)}"] = data
    failures = []
    for name, document in documents.items():
        config = tmp_path / f"{name}.yaml"
        config.write_bytes(document)
        proc = _bot_py(config)
        lines = proc.stderr.strip().splitlines()
        if proc.returncode != 2 or len(lines) != 1 or not lines[0].startswith("error: "):
            failures.append((name, proc.returncode, proc.stderr[-2000:]))
        assert "Traceback" not in proc.stderr + proc.stdout, (name, proc.stderr)
    assert failures == []
