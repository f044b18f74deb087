"""README's configuration table and config.yaml, checked against the pydantic models.

Every key of `Settings` (walked recursively) is a row of the table and a key of config.yaml, no
row or key is unknown, each default the table shows is the model's, config.yaml's values are the
defaults, and its commented-out notifier examples load with the built-in plugins.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from pydantic import BaseModel

from notifier.config import NotifierEntry, NotifierFilter, Settings, Template, parse_config
from notifier.fanout.discovery import discover_plugins
from notifier.fanout.dispatch import build_notifiers
from notifier.plugins import PluginContext
from notifier.workflows.autointel import DEPTHS

from .readme import ROOT, section, table

CONFIG_YAML = ROOT / "config.yaml"


def _section_models() -> Iterator[tuple[str, type[BaseModel]]]:
    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield name, annotation


def settings_leaves() -> dict[str, Any]:
    """Every `section.key` of Settings with its default (a section model's fields, recursively;
    dict-valued keys such as `autointel.pages` are leaves)."""
    leaves: dict[str, Any] = {}

    def walk(prefix: str, model: type[BaseModel], instance: BaseModel) -> None:
        for name, info in model.model_fields.items():
            value = getattr(instance, name)
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(f"{prefix}{name}.", annotation, value)
            else:
                leaves[f"{prefix}{name}"] = value

    defaults = Settings()
    for name, model in _section_models():
        walk(f"{name}.", model, getattr(defaults, name))
    return leaves


def test_the_walk_sees_every_section_and_the_notifiers_list() -> None:
    sections = {name for name, _ in _section_models()}
    assert sections | {"notifiers"} == set(Settings.model_fields)
    assert "autointel.pages" in settings_leaves()


def _table() -> dict[str, tuple[str, str]]:
    rows = table("Configuration reference")
    keys = [re.fullmatch(r"`([^`]+)`", row[0]) for row in rows]
    assert all(keys), [row[0] for row in rows]
    return {k.group(1): (row[1], row[2]) for k, row in zip(keys, rows, strict=True) if k}


def test_every_settings_key_is_in_the_readme_table_and_no_row_is_unknown() -> None:
    documented = set(_table())
    expected = set(settings_leaves()) | {"notifiers[]"}
    assert sorted(expected - documented) == [], "keys missing from the README table"
    assert sorted(documented - expected) == [], "README table rows that are not settings"


def test_the_notifiers_row_names_every_field_of_an_entry() -> None:
    _, meaning = _table()["notifiers[]"]
    named = set(re.findall(r"`([a-z_]+)", meaning))
    fields = set(NotifierEntry.model_fields) | set(NotifierFilter.model_fields)
    fields |= set(Template.model_fields)
    assert sorted(fields - named) == []


def _same(shown: Any, default: Any) -> bool:
    if isinstance(default, Path):
        return Path(str(shown)) == default
    if isinstance(default, tuple):
        return (
            isinstance(shown, list)
            and len(shown) == len(default)
            and all(_same(s, d) for s, d in zip(shown, default, strict=True))
        )
    if isinstance(default, bool) or isinstance(shown, bool):
        return shown is default
    if isinstance(default, int | float) and isinstance(shown, int | float):
        return float(shown) == float(default)
    return bool(shown == default)


def test_every_default_in_the_table_is_the_models_default() -> None:
    leaves = settings_leaves()
    checked = 0
    for key, (default_cell, _) in _table().items():
        if key == "notifiers[]":
            assert default_cell == "`[]`" and Settings().notifiers == ()
            continue
        default = leaves[key]
        literal = re.fullmatch(r"`([^`]*)`", default_cell)
        if literal is not None:
            shown = yaml.safe_load(literal.group(1))
            assert _same(shown, default), f"{key}: README says {shown!r}, the model {default!r}"
        elif default_cell == "empty":
            assert default in (None, "", ()), f"{key}: README says empty, the model {default!r}"
        elif default_cell == "autointel per depth":
            assert set(default) == {"autointel"} and set(default["autointel"]) == set(DEPTHS)
        elif default_cell == "1/5/15/40":
            assert [default[d] for d in DEPTHS] == [1, 5, 15, 40]
        else:
            pytest.fail(f"{key}: the test cannot read the default {default_cell!r}")
        checked += 1
    assert checked == len(leaves)


# ---------------------------------------------------------------------------------------------
# config.yaml


def _yaml_leaves(data: dict[str, Any], model: type[BaseModel], prefix: str = "") -> set[str]:
    found: set[str] = set()
    for key, value in data.items():
        info = model.model_fields.get(key)
        annotation = info.annotation if info is not None else None
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if nested and isinstance(value, dict):
            assert isinstance(annotation, type)
            found |= _yaml_leaves(value, annotation, f"{prefix}{key}.")
        else:
            found.add(f"{prefix}{key}")
    return found


def test_config_yaml_has_every_key_and_no_unknown_one() -> None:
    data = yaml.safe_load(CONFIG_YAML.read_text(encoding="utf-8"))
    found = _yaml_leaves(data, Settings)
    expected = set(settings_leaves()) | {"notifiers"}
    assert sorted(expected - found) == [], "keys missing from config.yaml"
    assert sorted(found - expected) == [], "config.yaml keys that are not settings"


def test_config_yaml_shows_the_defaults() -> None:
    parsed = parse_config(CONFIG_YAML.read_text(encoding="utf-8"), env={}, source="config.yaml")
    assert parsed == Settings()


def test_every_config_yaml_key_has_a_comment_above_it_or_shares_the_one_before() -> None:
    """A key line is preceded by a comment line, or by another key of the same section that
    has one (`connect_timeout` and `read_timeout` share a comment)."""
    lines = CONFIG_YAML.read_text(encoding="utf-8").splitlines()
    undocumented: list[str] = []
    previous_kind = ""
    for line in lines:
        stripped = line.strip()
        if not stripped:
            previous_kind = "blank"
        elif stripped.startswith("#"):
            previous_kind = "comment"
        elif re.match(r"^ {2}[a-z_]+:", line):
            if previous_kind not in ("comment", "key"):
                undocumented.append(stripped)
            previous_kind = "key"
        else:
            previous_kind = "section" if re.match(r"^[a-z_]+:", line) else "key"
    assert undocumented == []


def _commented_examples() -> str:
    text = CONFIG_YAML.read_text(encoding="utf-8")
    start = text.index("# Examples (uncomment")
    lines = text[start:].splitlines()[1:]
    assert all(line.startswith("#  ") for line in lines if line.strip()), lines
    return "notifiers:\n" + "\n".join(line[1:] for line in lines) + "\n"


@pytest.fixture
async def context() -> AsyncIterator[PluginContext]:
    async def send_dm(user_id: int, content: str, embed: dict[str, Any] | None) -> None:
        raise AssertionError("nothing is sent here")

    executor = ThreadPoolExecutor(max_workers=1)
    async with aiohttp.ClientSession() as http:
        yield PluginContext(http=http, executor=executor, send_dm=send_dm)
    executor.shutdown(wait=False)


async def test_the_commented_notifier_examples_in_config_yaml_load_with_the_builtin_plugins(
    context: PluginContext,
) -> None:
    env = {
        "SMTP_USER": "bot",
        "SMTP_PASSWORD": "pw-example",
        "OPS_WEBHOOK_ID": "112233445566778899",
        "OPS_WEBHOOK_TOKEN": "tok-example-0123456789",
    }
    settings = parse_config(_commented_examples(), env=env, source="config.yaml examples")
    assert len(settings.notifiers) == 4
    registry = discover_plugins(settings.fanout.plugin_dirs, strict=True)
    built = await build_notifiers(settings, registry, context, strict=True)
    try:
        assert sorted(built) == sorted(entry.name for entry in settings.notifiers)
    finally:
        for notifier in built.values():
            await notifier.plugin.close()


def test_the_events_and_template_fields_listed_in_the_readme_are_the_codes() -> None:
    from notifier.events import Event
    from notifier.fanout.templates import notice_field_names

    text = section("Configuration reference")
    events = re.search(r"^Events: (.*?)\. Template", text, re.M | re.S)
    fields = re.search(r"Template\s+fields: `(.*?)`", text, re.S)
    assert events is not None and fields is not None
    assert set(re.findall(r"`([a-z_]+)`", events.group(1))) == {e.value for e in Event}
    listed = set(re.findall(r"\{([a-z_]+)\}", fields.group(1)))
    assert listed == set(notice_field_names())
