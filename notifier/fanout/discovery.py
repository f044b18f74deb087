"""Finding notifier plugins: the built-in folder, the operator's folders and installed entry points.

Plugins come from two places, both read by `discover_plugins`:

- every `*.py` file (not starting with `_`) in the built-in plugins' folder (`BUILTIN_PLUGIN_DIR`)
  and in each of `fanout.plugin_dirs`, imported by file path under a prefixed module name so two
  folders may both hold an `email.py`;
- the `notifier.plugins` entry-point group, so a plugin can ship as its own installed distribution.

A file that cannot be imported, holds no plugin class (or more than one), or declares bad metadata is
reported with the file's path; by default the bot starts without it, with `fanout.strict: true`
discovery raises `PluginError` instead.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import inspect
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from loguru import logger
from pydantic import BaseModel

from ..errors import PluginError
from ..events import Event
from ..logs import redactor
from ..sourcefiles import NotASourceFile, import_file, module_name_for
from .plugin import Plugin, PluginClass
from .templates import TemplateFieldError, notice_field_names, template_field_names

__all__ = [
    "BUILTIN_PLUGIN_DIR",
    "ENTRY_POINT_GROUP",
    "PluginLoadError",
    "PluginRegistry",
    "discover_plugins",
    "load_plugin_file",
    "validate_plugin_class",
]

ENTRY_POINT_GROUP = "notifier.plugins"


def _builtin_plugin_dir() -> Path:
    """The folder of the built-in plugins (email, discord_webhook, apprise, dm, ...).

    An installed copy holds them in the package, `notifier/builtin_plugins/` (setup.py maps the
    source tree's top-level `plugins/` there at build time); a source checkout (an editable
    install too) has only `plugins/` beside the package. Found by path, never by importing a
    module named `plugins`: that name belongs to whoever installs a package called so, and the
    folder beside an installed `notifier` is site-packages, not ours unless it is a checkout.
    """
    package = Path(__file__).resolve().parents[1]
    packaged = package / "builtin_plugins"
    checkout = package.parent / "plugins"
    if (
        not packaged.is_dir()
        and (package.parent / "pyproject.toml").is_file()
        and checkout.is_dir()
    ):
        return checkout
    return packaged


# Always searched first, so an operator's `plugin_dirs` adds plugins without hiding the built-in
# ones.
BUILTIN_PLUGIN_DIR = _builtin_plugin_dir()

_PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class PluginLoadError:
    """Why one plugin source (a file or an entry point) was not loaded."""

    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass(frozen=True, slots=True)
class PluginRegistry:
    """The plugins found by one discovery pass, by name, and the sources that failed."""

    plugins: Mapping[str, PluginClass] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    errors: tuple[PluginLoadError, ...] = ()

    def get(self, name: str) -> PluginClass | None:
        return self.plugins.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self.plugins)


def validate_plugin_class(cls: object, source: str) -> PluginClass:
    """Check a candidate class's metadata; raise PluginError naming `source` if it is wrong."""
    if not (isinstance(cls, type) and issubclass(cls, Plugin)) or cls is Plugin:
        raise PluginError(source, f"{cls!r} is not a subclass of notifier.plugins.Plugin")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _PLUGIN_NAME.match(name):
        raise PluginError(
            source,
            f"{cls.__name__}.name must be lower-case letters, digits and _ (got {name!r})",
        )
    events = getattr(cls, "events", None)
    if (
        not isinstance(events, frozenset)
        or not events
        or not all(isinstance(e, Event) for e in events)
    ):
        raise PluginError(
            source, f"{cls.__name__}.events must be a non-empty frozenset of Event (got {events!r})"
        )
    options = getattr(cls, "Options", None)
    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise PluginError(source, f"{cls.__name__}.Options must be a pydantic BaseModel subclass")
    config = options.model_config
    if config.get("extra") != "forbid" or not config.get("frozen"):
        raise PluginError(
            source,
            f"{cls.__name__}.Options must set model_config = ConfigDict(extra='forbid', "
            "frozen=True) so a typo in config.yaml is an error, not a silently ignored key",
        )
    if not inspect.iscoroutinefunction(cls.send) or cls.send is Plugin.send:
        raise PluginError(source, f"{cls.__name__}.send must be an `async def` override")
    if not inspect.iscoroutinefunction(cls.close):
        raise PluginError(source, f"{cls.__name__}.close must be an `async def`")
    for event in events:
        if event not in cls.templates:
            raise PluginError(source, f"{cls.__name__}.templates has no default for {event.value}")
    allowed = notice_field_names() | cls.extra_fields
    for event, template in cls.templates.items():
        for part, text in (("title", template.title), ("body", template.body)):
            try:
                unknown = template_field_names(text) - allowed
            except TemplateFieldError as exc:
                raise PluginError(source, f"default template {event.value}.{part}: {exc}") from None
            if unknown:
                raise PluginError(
                    source,
                    f"default template {event.value}.{part} names unknown field(s) "
                    f"{', '.join(sorted(unknown))}",
                )
    return cls


def _plugin_classes(module: ModuleType) -> list[type[Any]]:
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Plugin)
        and obj is not Plugin
        and obj.__module__ == module.__name__
    ]


def _describe(exc: BaseException) -> str:
    """One line naming the exception and, for errors inside the plugin file, where it happened."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return redactor.redact(f"{type(exc).__name__}: {exc}{where}")


def load_plugin_file(path: Path) -> PluginClass:
    """Import one plugin file by path and return its one plugin class, or raise PluginError."""
    source = str(path)
    try:
        module = import_file(path, module_name_for(path, "plugin"))
    except NotASourceFile as exc:
        raise PluginError(source, str(exc)) from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        raise PluginError(source, f"failed to import: {_describe(exc)}") from None
    classes = _plugin_classes(module)
    if not classes:
        raise PluginError(source, "defines no plugin class (a subclass of notifier.plugins.Plugin)")
    if len(classes) > 1:
        names = ", ".join(sorted(c.__name__ for c in classes))
        raise PluginError(source, f"defines {len(classes)} plugin classes ({names}); one per file")
    return validate_plugin_class(classes[0], source)


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> PluginClass:
    source = f"entry point {ep.name!r} ({ep.value}) in group {ENTRY_POINT_GROUP!r}"
    try:
        loaded = ep.load()
    except Exception as exc:  # noqa: BLE001 - any import failure becomes one reported error
        raise PluginError(source, f"failed to import: {_describe(exc)}") from None
    if isinstance(loaded, ModuleType):
        classes = _plugin_classes(loaded)
        if len(classes) != 1:
            raise PluginError(source, f"module defines {len(classes)} plugin classes; expected 1")
        loaded = classes[0]
    return validate_plugin_class(loaded, source)


def _plugin_files(plugin_dirs: Iterable[Path], include_builtin: bool) -> list[Path]:
    dirs: list[Path] = [BUILTIN_PLUGIN_DIR] if include_builtin else []
    dirs.extend(plugin_dirs)
    seen: set[Path] = set()
    files: list[Path] = []
    for folder in dirs:
        resolved = folder.resolve()
        if resolved in seen or not resolved.is_dir():
            continue
        seen.add(resolved)
        files.extend(p for p in sorted(resolved.glob("*.py")) if not p.name.startswith("_"))
    return files


def discover_plugins(
    plugin_dirs: Iterable[Path] = (),
    *,
    strict: bool = False,
    include_builtin: bool = True,
    entry_points: bool = True,
) -> PluginRegistry:
    """Load every plugin from the built-in folder, `plugin_dirs` and the entry-point group.

    A source that fails is logged (naming the file or entry point) and left out; with `strict`
    the first failure raises PluginError after all sources were tried, so the message can list
    every broken one. Two plugins with the same `name`: the first found wins (built-in folder,
    then `plugin_dirs` in order, then entry points) and the second is an error.
    """
    plugins: dict[str, PluginClass] = {}
    sources: dict[str, str] = {}
    errors: list[PluginLoadError] = []

    def add(loader: Callable[[], PluginClass], source: str) -> None:
        try:
            cls: PluginClass = loader()
        except PluginError as exc:
            message = str(exc).removeprefix(f"plugin {exc.plugin!r}: ")
            errors.append(PluginLoadError(exc.plugin, message))
            return
        if cls.name in plugins:
            errors.append(
                PluginLoadError(
                    source,
                    f"plugin name {cls.name!r} is already taken by {sources[cls.name]}",
                )
            )
            return
        plugins[cls.name] = cls
        sources[cls.name] = source

    for path in _plugin_files(plugin_dirs, include_builtin):
        add(functools.partial(load_plugin_file, path), str(path))
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            add(functools.partial(_load_entry_point, ep), f"entry point {ep.name!r} ({ep.value})")

    for error in errors:
        logger.error(redactor.redact(f"notifier plugin not loaded: {error}"))
    if strict and errors:
        first = errors[0]
        more = (
            f" (and {len(errors) - 1} more: {'; '.join(map(str, errors[1:]))})"
            if errors[1:]
            else ""
        )
        raise PluginError(first.source, f"{first.message}{more}")
    return PluginRegistry(plugins=plugins, sources=sources, errors=tuple(errors))
