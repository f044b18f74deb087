"""Reading and validating `config.yaml`.

The file is parsed with pyyaml, `${VAR}` / `${VAR:-default}` are replaced from the environment in
every string value, and the result is validated by frozen pydantic models that forbid unknown keys.
Every failure becomes one `ConfigError` naming the field path and the bad value, so `bot.py` can print
one line and exit non-zero instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError
from .events import Event

__all__ = [
    "DEFAULT_API_BASE",
    "AutointelSettings",
    "DiscordSettings",
    "FanoutSettings",
    "LoggingSettings",
    "MetricsSettings",
    "NotifierEntry",
    "NotifierFilter",
    "ProgressSettings",
    "RunnerSettings",
    "Settings",
    "StorageSettings",
    "WarningSettings",
    "WorkflowSettings",
    "WorkflowsSettings",
    "load_config",
    "parse_config",
    "secret_values",
]

DEFAULT_API_BASE = "https://discord.com/api/v10"


def _no_nul(path: Path) -> Path:
    # The OS refuses such a name only when it is used (ValueError, not OSError): refuse it here.
    if "\x00" in str(path):
        raise ValueError("a path must not contain a NUL character")
    return path


ConfigPath = Annotated[Path, AfterValidator(_no_nul)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiscordSettings(_Section):
    token: SecretStr | None = None
    api_base: str = DEFAULT_API_BASE
    interaction_ttl: float = Field(default=900.0, gt=0)
    handoff_before: float = Field(default=60.0, ge=0)
    safety_margin: float = Field(default=5.0, ge=0)
    guild_ids: tuple[int, ...] = ()
    admin_role_ids: tuple[int, ...] = ()
    operator_user_ids: tuple[int, ...] = ()

    @field_validator("token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("api_base")
    @classmethod
    def _api_base_is_http(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^/\s]+\S*", value):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _handoff_fits_ttl(self) -> DiscordSettings:
        if self.handoff_before + self.safety_margin >= self.interaction_ttl:
            raise ValueError(
                "handoff_before + safety_margin must be shorter than interaction_ttl "
                f"({self.handoff_before} + {self.safety_margin} >= {self.interaction_ttl})"
            )
        return self


class StorageSettings(_Section):
    path: ConfigPath = Path("data")
    retention_days: float = Field(default=30.0, gt=0)
    retention_interval: float = Field(default=3600.0, gt=0)
    write_retry_initial: float = Field(default=0.5, gt=0)
    write_retry_max: float = Field(default=60.0, gt=0)


class RunnerSettings(_Section):
    max_concurrent: int = Field(default=20, ge=1)
    max_per_user: int = Field(default=3, ge=1)
    shutdown_grace: float = Field(default=10.0, ge=0)


class ProgressSettings(_Section):
    min_interval: float = Field(default=2.0, gt=0)
    bot_edits_per_second: float = Field(default=10.0, gt=0)


class WarningSettings(_Section):
    threshold: float = Field(default=600.0, ge=0)
    history: int = Field(default=20, ge=1)
    default_estimates: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {
            "autointel": {"quick": 30.0, "standard": 180.0, "deep": 900.0, "comprehensive": 1800.0}
        }
    )


class AutointelSettings(_Section):
    allow_private_networks: bool = False
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    max_page_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    pages: dict[str, int] = Field(
        default_factory=lambda: {"quick": 1, "standard": 5, "deep": 15, "comprehensive": 40}
    )
    page_delay: float = Field(default=0.0, ge=0)
    user_agent: str = "notifier-autointel/0.1 (+https://github.com/)"
    # Page worker processes (decoding, parsing) shared by all runs, and the CPU one page may use.
    analysis_workers: int = Field(default=2, ge=1, le=64)
    analysis_cpu_seconds: float = Field(default=5.0, gt=0, le=600)


class WorkflowSettings(_Section):
    """One workflow's operator settings (`workflows.<name>` in config.yaml).

    `estimate_s`: how long a run is expected to take, one number, or a map from an option's value
    to seconds (`{quick: 30, deep: 900}`: the first option whose value is a key decides); it feeds
    the timeout warning until the workflow has history. `max_per_user`: at most this many of this
    workflow running per user (the runner's own `max_per_user` still caps all of them).
    `results_channel_id`: hand-offs and results go to this channel instead of the one the
    command was used in; a map `{guild_id: channel_id}` chooses per guild."""

    enabled: bool = True
    estimate_s: float | dict[str, float] | None = None
    max_per_user: int | None = Field(default=None, ge=1)
    results_channel_id: int | dict[int, int] | None = None


class WorkflowsSettings(BaseModel):
    """`workflows:`: where workflows are found (`dirs`, relative to the config file's folder),
    and under any other key a workflow's name and its WorkflowSettings."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, WorkflowSettings] = Field(init=False)

    dirs: tuple[ConfigPath, ...] = (Path("workflows"),)

    @model_validator(mode="after")
    def _names(self) -> WorkflowsSettings:
        for name in self.__pydantic_extra__ or {}:
            if not re.fullmatch(r"[a-z0-9_-]{1,32}", name):
                raise ConfigError(
                    f"workflows.{name}",
                    "a workflow name is 1-32 lowercase letters, digits, '-' or '_' "
                    "(a slash command name)",
                )
        return self

    def settings_for(self, name: str) -> WorkflowSettings:
        """The settings of workflow `name` (the defaults if the file does not mention it)."""
        extra = self.__pydantic_extra__ or {}
        found = extra.get(name)
        return found if isinstance(found, WorkflowSettings) else WorkflowSettings()

    @property
    def configured(self) -> dict[str, WorkflowSettings]:
        """Every workflow the file names, with its settings."""
        return dict(self.__pydantic_extra__ or {})


class MetricsSettings(_Section):
    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"must be HOST:PORT, got {value!r}")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if host != "localhost":
                raise ValueError(f"host must be an IP address or localhost, got {host!r}") from None
        return value


class LoggingSettings(_Section):
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    file: ConfigPath | None = None
    json_format: bool = False


class FanoutSettings(_Section):
    strict: bool = False
    plugin_dirs: tuple[ConfigPath, ...] = (Path("plugins"),)
    timeout: float = Field(default=15.0, gt=0)
    executor_workers: int = Field(default=8, ge=1)
    max_attempts: int = Field(default=6, ge=1)
    backoff_initial: float = Field(default=2.0, gt=0)
    backoff_max: float = Field(default=300.0, gt=0)
    outbox_path: ConfigPath | None = None


class NotifierFilter(_Section):
    guild_ids: tuple[int, ...] = ()
    commands: tuple[str, ...] = ()
    user_ids: tuple[int, ...] = ()


class Template(_Section):
    title: str | None = None
    body: str | None = None


_EVENT_NAMES = ", ".join(e.value for e in Event)


class NotifierEntry(_Section):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    plugin: Annotated[str, Field(min_length=1)]
    on: tuple[Event, ...]
    enabled: bool = True
    filter: NotifierFilter = NotifierFilter()
    templates: dict[Event, Template] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("on", mode="before")
    @classmethod
    def _known_events(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(f"must be a non-empty list of events ({_EVENT_NAMES})")
        for item in value:
            if item not in {e.value for e in Event}:
                raise ValueError(f"unknown event {item!r} (known: {_EVENT_NAMES})")
        return value

    @field_validator("templates", mode="before")
    @classmethod
    def _known_template_events(cls, value: object) -> object:
        if isinstance(value, dict):
            for key in value:
                if key not in {e.value for e in Event}:
                    raise ValueError(f"unknown event {key!r} (known: {_EVENT_NAMES})")
        return value


class Settings(_Section):
    discord: DiscordSettings = DiscordSettings()
    storage: StorageSettings = StorageSettings()
    runner: RunnerSettings = RunnerSettings()
    progress: ProgressSettings = ProgressSettings()
    warnings: WarningSettings = WarningSettings()
    autointel: AutointelSettings = AutointelSettings()
    workflows: WorkflowsSettings = WorkflowsSettings()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()
    fanout: FanoutSettings = FanoutSettings()
    notifiers: tuple[NotifierEntry, ...] = ()

    @model_validator(mode="after")
    def _unique_notifier_names(self) -> Settings:
        seen: set[str] = set()
        for index, entry in enumerate(self.notifiers):
            if entry.name in seen:
                raise ConfigError(f"notifiers[{index}].name", f"duplicate name {entry.name!r}")
            seen.add(entry.name)
        return self


# ---------------------------------------------------------------------------------------------
# YAML loading


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false are booleans.

    YAML 1.1 (pyyaml's default) reads the key `on:` as the boolean True and `no` as False, which
    would turn every notifier's `on: [started]` into a key nobody can name.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


# ---------------------------------------------------------------------------------------------
# Environment substitution

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _substitute(value: str, env: Mapping[str, str], path: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env and (env[name] != "" or default is None):
            return env[name]
        if default is not None:
            return default
        raise ConfigError(path, f"environment variable {name} is not set")

    return _VAR.sub(replace, value)


# A config file holds a few hundred values; more means YAML aliases multiplying each other.
_MAX_VALUES = 100_000


def _expand(node: Any, env: Mapping[str, str], path: str) -> Any:
    """A copy of the parsed document with `${VAR}` substituted in every string.

    YAML aliases may make the document a graph: one that contains itself (``a: &a [*a]``) is
    refused, and so is one whose aliases expand past `_MAX_VALUES` values (a "billion laughs").
    """
    inside: set[int] = set()  # containers on the path from the root to `node`
    count = 0

    def expand(node: Any, path: str) -> Any:
        nonlocal count
        count += 1
        if count > _MAX_VALUES:
            raise ConfigError("", f"more than {_MAX_VALUES:,} values (YAML aliases multiplying?)")
        if isinstance(node, str):
            return _substitute(node, env, path)
        if not isinstance(node, list | dict):
            return node
        if id(node) in inside:
            raise ConfigError(path, "a YAML alias refers to a value that contains it")
        inside.add(id(node))
        try:
            if isinstance(node, list):
                return [expand(item, f"{path}[{i}]") for i, item in enumerate(node)]
            return {
                key: expand(item, f"{path}.{key}" if path else str(key))
                for key, item in node.items()
            }
        finally:
            inside.discard(id(node))

    return expand(node, path)


# ---------------------------------------------------------------------------------------------
# Error formatting


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _first_error(error: ValidationError) -> ConfigError:
    detail = error.errors(include_url=False)[0]
    path = _field_path(tuple(detail["loc"]))
    kind = detail["type"]
    message = str(detail["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return ConfigError(path, "unknown key")
    if kind == "missing":
        return ConfigError(path, "required key is missing")
    if (
        "input" in detail
        and kind not in {"value_error"}
        and not isinstance(detail["input"], dict | list)
    ):
        return ConfigError(path, f"{message} (got {_short(detail['input'])})")
    return ConfigError(path, message)


def parse_config(
    text: str, *, env: Mapping[str, str] | None = None, source: str | None = None
) -> Settings:
    """Validate a YAML document as Settings; raise ConfigError (one line) on any problem."""
    environ = os.environ if env is None else env
    try:
        raw = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError("", f"{where}not valid YAML ({problem})", source=source) from None
    except RecursionError:
        raise ConfigError("", "not valid YAML (nested too deeply)", source=source) from None
    except Exception as exc:  # noqa: BLE001 - pyyaml's constructors are not error-safe
        # They raise plain Python errors for a scalar the resolver (or an explicit tag) matched
        # but that does not convert: an integer past Python's 4300-digit limit, the date
        # 2001-13-45, the hex `0x_` (ValueError), `!!int ''` (IndexError), `!!bool maybe`
        # (KeyError), `!!timestamp x` (AttributeError). Each is a document that is not valid.
        reason = (str(exc).splitlines() or [""])[0] or type(exc).__name__
        raise ConfigError(
            "", f"not valid YAML (a value cannot be read: {reason})", source=source
        ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            "",
            f"the top level must be a mapping of sections, got {type(raw).__name__}",
            source=source,
        )
    for key in raw:
        if not isinstance(key, str):
            raise ConfigError(_short(key), "keys must be text", source=source)
    try:
        expanded = _expand(raw, environ, "")
        discord = expanded.get("discord")
        if environ.get("DISCORD_API_BASE"):
            if discord is None:
                discord = expanded["discord"] = {}
            if isinstance(discord, dict) and "api_base" not in discord:
                discord["api_base"] = environ["DISCORD_API_BASE"]
        return Settings.model_validate(expanded)
    except ConfigError as exc:
        raise ConfigError(exc.field, exc.message, source=source) from None
    except ValidationError as exc:
        # A ConfigError raised inside a validator arrives wrapped; keep its own field path.
        for detail in exc.errors(include_url=False):
            ctx_error = (detail.get("ctx") or {}).get("error")
            if isinstance(ctx_error, ConfigError):
                raise ConfigError(ctx_error.field, ctx_error.message, source=source) from None
        first = _first_error(exc)
        raise ConfigError(first.field, first.message, source=source) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError("", str(exc), source=source) from None
    except RecursionError:
        raise ConfigError("", "the document is nested too deeply", source=source) from None


def load_config(path: Path | str, *, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a config file. Blocking: call it before the event loop starts, or in an
    executor (the reload path does)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", "file not found", source=str(file)) from None
    except IsADirectoryError:
        raise ConfigError("", "is a directory, not a file", source=str(file)) from None
    except PermissionError:
        raise ConfigError(
            "", "permission denied (cannot read the file)", source=str(file)
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"not UTF-8 text ({exc.reason})", source=str(file)) from None
    except OSError as exc:
        raise ConfigError("", f"cannot read ({exc.strerror})", source=str(file)) from None
    return parse_config(text, env=env, source=str(file))


def secret_values(settings: Settings) -> list[str]:
    """Every configured value that must never appear in a log line or a message.

    The bot token, plus any notifier option that looks like a credential or a URL carrying one
    (Apprise URLs hold passwords and webhook tokens in their path). The redactor masks them.
    """
    secrets: list[str] = []
    if settings.discord.token is not None:
        secrets.append(settings.discord.token.get_secret_value())

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item, key)
        elif isinstance(node, str) and node:
            lowered = key.lower()
            if any(word in lowered for word in ("password", "token", "secret", "key")):
                secrets.append(node)
            elif "://" in node:
                secrets.extend(_url_secrets(node))

    for entry in settings.notifiers:
        walk(entry.options, "")
    return [s for s in dict.fromkeys(secrets) if len(s) >= 4]


_URL = re.compile(r"^(?P<scheme>[a-z0-9+.-]+)://(?:(?P<userinfo>[^@/]*)@)?(?P<rest>.*)$", re.I)


def _url_secrets(url: str) -> list[str]:
    """Secrets inside a URL: the password of user:password@, and every path or query value that
    looks like a token (Apprise's discord://id/token, ?pass=, ?token=)."""
    match = _URL.match(url.strip())
    if not match:
        return []
    found: list[str] = []
    userinfo = match.group("userinfo")
    if userinfo and ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    rest = match.group("rest")
    path, _, query = rest.partition("?")
    for segment in path.split("/")[1:]:
        if len(segment) >= 16:
            found.append(segment)
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if value and any(w in name.lower() for w in ("pass", "token", "secret", "key")):
            found.append(value)
    return found
