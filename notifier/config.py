"""Reading and validating `config.yaml`.

The file is parsed with pyyaml (its node tree is kept: it knows the line of every key),
`${VAR}` / `${VAR:-default}` are replaced from the environment in every string value, and the
result is validated by frozen pydantic models that forbid unknown keys. Every problem in the file
is gathered, in plain words (never pydantic's), as a `ConfigError` naming the file, the line, the
field path and the bad value (`config.yaml:12: notifiers[2].on: unknown event 'complete'`), so
`config check`, the bot's start and a reload all show every mistake at once, one line each.

Relative paths inside a config file (storage.path, fanout.plugin_dirs, fanout.outbox_path,
logging.file, workflows.dirs) are taken relative to the file's folder, not to wherever the bot
was started; text parsed without a file keeps them as written.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

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
    "ConfigDocument",
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
    "UserNotificationsSettings",
    "WarningSettings",
    "WorkflowSettings",
    "WorkflowsSettings",
    "document_of",
    "field_path",
    "load_config",
    "parse_config",
    "parse_config_document",
    "plain_errors",
    "read_config_document",
    "resolve_paths",
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
    # Gateway shards: None runs one unsharded connection (a bot in fewer than 2,500 servers).
    # With a count, this process holds `shard_ids` of them (None: every one).
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: tuple[int, ...] | None = None
    # Seconds between two IDENTIFYs of one bucket (Discord: 5), kept across processes.
    identify_window: float = Field(default=5.0, gt=0)
    # With storage.backend: postgres, every process of the bot takes a turn from one bucket in
    # PostgreSQL before each bot-token request (notifier.discord.rest_budget): Discord's 50/s are
    # per bot, not per process. Burst 1: never more than rate + 1 in any second.
    rest_budget_per_s: float = Field(default=45.0, gt=0, le=50)
    rest_budget_burst: float = Field(default=1.0, ge=1)
    rest_budget_fallback_per_s: float = Field(default=2.0, gt=0)

    @field_validator("token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("shard_count", mode="before")
    @classmethod
    def _empty_shard_count_is_none(cls, value: object) -> object:
        # `shard_count: ${NOTIFIER_SHARD_COUNT:-}` leaves a process unsharded.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _shard_ids_from_text(cls, value: object) -> object:
        # `shard_ids: ${NOTIFIER_SHARD_IDS:-}` gives each process its own from the environment:
        # "0,1" is [0, 1], an empty text is "not set".
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",")]
            return None if parts == [""] else parts
        return value

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

    @model_validator(mode="after")
    def _shard_ids_fit_the_count(self) -> DiscordSettings:
        ids, count = self.shard_ids, self.shard_count
        if ids is None:
            return self
        if count is None:
            raise ConfigError(
                "discord.shard_ids",
                "needs discord.shard_count (how many shards the bot has across all processes)",
            )
        if not ids:
            # nextcord would read an empty list as "every shard": say so instead.
            raise ConfigError(
                "discord.shard_ids",
                "is empty; list this process's shards, or leave it out to run all of them",
            )
        outside = [shard for shard in ids if not 0 <= shard < count]
        if outside:
            raise ConfigError(
                "discord.shard_ids",
                f"shard {outside[0]} does not exist: with shard_count {count} the ids are "
                f"0 to {count - 1}",
            )
        repeated = sorted({shard for shard in ids if ids.count(shard) > 1})
        if repeated:
            raise ConfigError("discord.shard_ids", f"shard {repeated[0]} is listed twice")
        return self


class StorageSettings(_Section):
    # sqlite: result files, an SQLite index and step files under `path` (one process).
    # postgres: one PostgreSQL database at `postgres_dsn`, shared by gateway and worker processes.
    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: ConfigPath = Path("data")
    # A libpq connection string or postgresql:// URL; write its password as ${VAR}.
    postgres_dsn: SecretStr | None = None
    retention_days: float = Field(default=30.0, gt=0)
    retention_interval: float = Field(default=3600.0, gt=0)
    write_retry_initial: float = Field(default=0.5, gt=0)
    write_retry_max: float = Field(default=60.0, gt=0)

    @field_validator("postgres_dsn", mode="before")
    @classmethod
    def _empty_dsn_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @model_validator(mode="after")
    def _postgres_needs_a_dsn(self) -> StorageSettings:
        if self.backend == "postgres" and self.postgres_dsn is None:
            raise ValueError(
                "backend is postgres but postgres_dsn is not set (a connection string such as "
                "postgresql://notifier:${NOTIFIER_PG_PASSWORD}@db.example:5432/notifier)"
            )
        return self


class RunnerSettings(_Section):
    max_concurrent: int = Field(default=20, ge=1)
    max_per_user: int = Field(default=3, ge=1)
    shutdown_grace: float = Field(default=10.0, ge=0)
    # A workflow found running at start is resumed at most this many times (then it fails).
    max_resumes: int = Field(default=3, ge=0)
    # The largest value a workflow step may record, in bytes as stored (JSON).
    max_step_bytes: int = Field(default=1024 * 1024, ge=1, le=64 * 1024 * 1024)


class DistributedSettings(_Section):
    """How workers of the distributed mode (``notifier worker``) find a dead one: a workflow a
    killed worker ran resumes elsewhere within about stall_timeout + sweep_interval +
    fetch_polling seconds (defaults: 26 s)."""

    heartbeat: float = Field(default=5.0, gt=0)
    stall_timeout: float = Field(default=20.0, gt=0)
    sweep_interval: float = Field(default=5.0, gt=0)
    fetch_polling: float = Field(default=1.0, gt=0)
    # A worker lowers its CPU priority by this much (nice) at start, so that on a machine it
    # shares with a gateway the gateway's answers (3 s to acknowledge an interaction) go first;
    # 0 keeps the priority it was started with.
    worker_nice: int = Field(default=5, ge=0, le=19)

    @model_validator(mode="after")
    def _heartbeats_fit_the_timeout(self) -> DistributedSettings:
        if self.stall_timeout <= 2 * self.heartbeat:
            raise ValueError(
                "stall_timeout must be more than twice heartbeat (a live worker would look dead "
                f"after one late heartbeat: {self.stall_timeout} <= 2 x {self.heartbeat})"
            )
        return self


UserVia = Literal["dm", "email", "webhook"]
USER_EVENTS: tuple[Event, ...] = (
    Event.COMPLETED,
    Event.FAILED,
    Event.PERSISTED,
    Event.HANDOFF,
    Event.RESUMED,
)
USER_DEFAULT_EVENTS: tuple[Event, ...] = (Event.COMPLETED, Event.FAILED, Event.PERSISTED)


class UserNotificationsSettings(_Section):
    """What users may choose with ``/notify`` (their own notices: DM, verified e-mail, signed
    webhook callbacks). `email_notifier` names the operator's ``email`` notifier whose SMTP server
    sends users' mail (codes and notices); without it e-mail is not offered."""

    enabled: bool = True
    allow: tuple[UserVia, ...] = ("dm", "email", "webhook")
    email_notifier: str | None = None
    webhook_include_result: bool = False
    webhook_max_failures: int = Field(default=20, ge=1)
    # Notices one user may receive per day, all channels together (a flood stops here).
    per_user_daily_limit: int = Field(default=50, ge=1)

    @field_validator("allow")
    @classmethod
    def _no_repeats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value))


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


LogLevel = Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]
_LEVELS: tuple[str, ...] = get_args(LogLevel)


class LoggingSettings(_Section):
    level: LogLevel = "INFO"
    file: ConfigPath | None = None
    json_format: bool = False

    @field_validator("level", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        # `info` and `Info` mean INFO: loguru's names are upper-case, operators' often are not.
        if isinstance(value, str) and value.strip().upper() in _LEVELS:
            return value.strip().upper()
        return value  # anything else is refused with the list of levels, as written


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


def _notifier_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError("must be letters, digits, '.', '-' or '_' only (no spaces)")
    return name


class NotifierEntry(_Section):
    name: Annotated[str, Field(min_length=1), AfterValidator(_notifier_name)]
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
    distributed: DistributedSettings = DistributedSettings()
    user_notifications: UserNotificationsSettings = UserNotificationsSettings()
    notifiers: tuple[NotifierEntry, ...] = ()

    @model_validator(mode="after")
    def _unique_notifier_names(self) -> Settings:
        seen: set[str] = set()
        for index, entry in enumerate(self.notifiers):
            if entry.name in seen:
                raise ConfigError(f"notifiers[{index}].name", f"duplicate name {entry.name!r}")
            seen.add(entry.name)
        mail = self.user_notifications.email_notifier
        if mail is not None:
            mailer = next((e for e in self.notifiers if e.name == mail), None)
            if mailer is None:
                raise ConfigError(
                    "user_notifications.email_notifier",
                    f"no notifier is named {mail!r} (it must name an `email` notifier entry)",
                )
            if mailer.plugin != "email":
                raise ConfigError(
                    "user_notifications.email_notifier",
                    f"notifier {mail!r} uses plugin {mailer.plugin!r}; it must be an `email` one",
                )
        return self


def postgres_dsn_of(storage: StorageSettings) -> str:
    """The DSN of ``storage.backend: postgres`` (ConfigError naming the field when unset)."""
    if storage.postgres_dsn is None:
        raise ConfigError("storage.postgres_dsn", "backend is postgres but postgres_dsn is not set")
    return storage.postgres_dsn.get_secret_value()


def postgres_extra_missing(exc: ModuleNotFoundError) -> ConfigError | None:
    """The ConfigError for a failed import of a PostgreSQL module when what is missing is the
    postgres extra (psycopg); None for any other missing module (a bug: re-raise it)."""
    if (exc.name or "").partition(".")[0] not in ("psycopg", "psycopg_pool", "procrastinate"):
        return None
    return ConfigError(
        "storage.backend",
        f"postgres needs the postgres extra ({exc}): pip install 'nextcord-notifier[postgres]'",
    )


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


@dataclass
class _Expansion:
    """What `_expand` found besides the expanded document: unset variables (one problem each)
    and the original text of every value a variable was substituted into, by field path, so an
    error about such a value shows `${VAR}` and never the secret the environment holds."""

    problems: list[ConfigError] = field(default_factory=list)
    originals: dict[str, str] = field(default_factory=dict)


def _substitute(value: str, env: Mapping[str, str], path: str, found: _Expansion) -> str:
    substituted = False

    def replace(match: re.Match[str]) -> str:
        nonlocal substituted
        if match.group(0) == "$$":
            return "$"
        substituted = True
        name, default = match.group(1), match.group(2)
        if name in env and (env[name] != "" or default is None):
            return env[name]
        if default is not None:
            return default
        found.problems.append(ConfigError(path, f"environment variable {name} is not set"))
        return ""

    result = _VAR.sub(replace, value)
    if substituted:
        found.originals[path] = value
    return result


# A config file holds a few hundred values; more means YAML aliases multiplying each other.
_MAX_VALUES = 100_000


def _expand(node: Any, env: Mapping[str, str], path: str, found: _Expansion) -> Any:
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
            return _substitute(node, env, path, found)
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
# Plain words for validation errors

_SECRET_WORDS = ("token", "password", "secret", "key")
_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def field_path(parts: Sequence[int | str]) -> str:
    """``("notifiers", 2, "on")`` -> ``notifiers[2].on``."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _path_parts(path: str) -> list[int | str]:
    """``notifiers[2].on`` -> ``["notifiers", 2, "on"]`` (the inverse of `field_path`)."""
    return [int(index) if index else name for index, name in _PATH_PART.findall(path)]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X; `Annotated[X, ...]` -> X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _keys_at(model: type[BaseModel], parts: Sequence[int | str]) -> list[str]:
    """The keys the model (section, entry) found at `parts` below `model` accepts; [] if the path
    does not lead to a model."""
    current: Any = model
    for part in parts:
        current = _unwrap(current)
        if isinstance(part, int):
            if get_origin(current) not in (tuple, list):
                return []
            current = get_args(current)[0]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            if part in current.model_fields:
                current = current.model_fields[part].annotation
            elif current.model_config.get("extra") == "allow":
                extra = get_type_hints(current).get("__pydantic_extra__")
                if get_origin(extra) is not dict:
                    return []
                current = get_args(extra)[1]
            else:
                return []
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _number(value: object) -> str:
    """A bound as an operator wrote it: 0, not 0.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _plain(detail: Mapping[str, Any]) -> str:
    """What a pydantic error means, in the words an operator uses (never pydantic's own)."""
    kind = str(detail["type"])
    ctx: Mapping[str, Any] = detail.get("ctx") or {}
    message = str(detail["msg"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be a whole number"
    if kind == "int_parsing_size":
        return "is too large a number"
    if kind in ("float_type", "float_parsing", "decimal_type", "decimal_parsing"):
        return "must be a number"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false"
    if kind in ("string_type", "string_sub_type", "bytes_type"):
        return "must be text"
    if kind == "string_unicode":
        return "must be valid text (not bytes)"
    if kind in ("tuple_type", "list_type", "set_type", "frozen_set_type", "iterable_type"):
        return "must be a list"
    if kind in ("dict_type", "mapping_type", "model_type", "model_attributes_type"):
        return "must be a mapping of keys to values"
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx.get('expected', '')}".rstrip()
    if kind == "greater_than":
        return f"must be greater than {_number(ctx.get('gt'))}"
    if kind == "greater_than_equal":
        return f"must be at least {_number(ctx.get('ge'))}"
    if kind == "less_than":
        return f"must be less than {_number(ctx.get('lt'))}"
    if kind == "less_than_equal":
        return f"must be at most {_number(ctx.get('le'))}"
    if kind in ("string_too_short", "too_short"):
        least = ctx.get("min_length", 1)
        if least == 1:
            return "must not be empty"
        unit = "characters" if kind == "string_too_short" else "items"
        return f"must have at least {least} {unit}"
    if kind in ("string_too_long", "too_long"):
        unit = "characters" if kind == "string_too_long" else "items"
        return f"must have at most {ctx.get('max_length')} {unit}"
    if kind == "string_pattern_mismatch":
        return f"does not have the expected form (the pattern {ctx.get('pattern')})"
    if kind == "path_type":
        return "must be a path"
    if kind == "path_not_file":
        return "must be an existing file"
    if kind == "path_not_directory":
        return "must be an existing folder"
    if kind in ("url_parsing", "url_type", "url_scheme", "url_syntax_violation"):
        return "must be a URL"
    if kind == "none_required":
        return "must be empty"
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message.removeprefix(prefix)
    # A kind not listed above: pydantic's words, turned into ours as far as they go.
    message = message.replace("Input should be", "must be").replace("Field required", "is required")
    return message[:1].lower() + message[1:]


def _normalised(data: Any, loc: Sequence[int | str], kind: str) -> list[int | str]:
    """The part of an error's `loc` that points into the document.

    Parts that do not index into `data` are pydantic's own tags (a union member's type name,
    ``estimate_s.float``; ``[key]`` for a dict's key) and are dropped, the walk going on at the
    same value; the last part of a `missing` error is the absent key and is kept."""
    parts: list[int | str] = []
    node = data
    for position, part in enumerate(loc):
        into_dict = isinstance(node, dict) and part in node
        into_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if into_dict or into_list:
            node = node[part]
            parts.append(part)
        elif kind == "missing" and position == len(loc) - 1:
            parts.append(part)
    return parts


def _is_secret(parts: Sequence[int | str]) -> bool:
    last = next((p for p in reversed(parts) if isinstance(p, str)), "")
    return any(word in last.lower() for word in _SECRET_WORDS)


def plain_errors(
    error: ValidationError,
    *,
    data: Any,
    model: type[BaseModel],
    prefix: str = "",
    show: Callable[[object], str] = _short,
    originals: Mapping[str, str] | None = None,
    unknown_key: str = "unknown key",
) -> list[ConfigError]:
    """Every problem of a pydantic `error` as a ConfigError in plain words, one per field.

    `data` is what was validated (errors are placed by walking it), `model` the model it was
    validated against (for "did you mean" on unknown keys), `prefix` the field path of `data` in
    the whole file (``notifiers[2].options``). `show` renders a bad value (the fanout's masks
    URLs); a value at a path in `originals` was substituted from the environment and is shown
    as its original text (``${SMTP_PASSWORD}``), so a secret never reaches an error line.
    `unknown_key` is what an unknown key is called (a plugin's: "unknown option for ...").
    """
    raw = error.errors(include_url=False)
    found: list[tuple[list[int | str], bool, str, str | None]] = []
    gathered: list[ConfigError] = []
    for detail in raw:
        inner = (detail.get("ctx") or {}).get("error")
        if isinstance(inner, ConfigError):
            # Raised by one of our own validators, which names its field itself.
            for problem in inner.problems:
                where = ".".join(p for p in (prefix, problem.field) if p)
                gathered.append(ConfigError(where, problem.message))
            continue
        kind = str(detail["type"])
        parts = _normalised(data, tuple(detail["loc"]), kind)
        key_check = "[key]" in detail["loc"]
        message = unknown_key if kind == "extra_forbidden" else _plain(detail)
        if key_check:
            message = f"key {message}"
        if kind == "extra_forbidden" and parts and isinstance(parts[-1], str):
            close = difflib.get_close_matches(parts[-1], _keys_at(model, parts[:-1]), n=1)
            if close:
                message += f", did you mean {close[0]!r}?"
        got: str | None = None
        bad = detail.get("input")
        if kind not in ("missing", "extra_forbidden") and not isinstance(bad, dict | list):
            path = field_path([*_path_parts(prefix), *parts])
            if originals is not None and path in originals:
                written = originals[path]
                for form in (repr(bad), show(bad), str(bad)):
                    message = message.replace(form, repr(written))
                got = repr(written)
            elif _is_secret(parts):
                got = "a value not shown (a secret)"
            else:
                got = show(bad)
            if got in message or "got " in message:
                got = None
        found.append((parts, key_check, message, got))

    # An error with a more precise one below it says less: a list too short because its only
    # item was refused, a value that fits no member of a union (one error per member: the member
    # the value looks like went deepest). Keep the precise ones; say what is left at one path
    # as one line.
    kept = [
        item
        for item in found
        if not any(len(o[0]) > len(item[0]) and o[0][: len(item[0])] == item[0] for o in found)
    ]
    merged: dict[tuple[str, bool], list[tuple[str, str | None]]] = {}
    for parts, key_check, message, got in kept:
        merged.setdefault((field_path(parts), key_check), []).append((message, got))
    for (path, _), items in merged.items():
        messages = list(dict.fromkeys(m for m, _ in items))
        if len(messages) > 1 and all(m.startswith("must be ") for m in messages):
            message = "must be " + " or ".join(m.removeprefix("must be ") for m in messages)
        else:
            message = "; ".join(messages)
        got = next((g for _, g in items if g is not None), None)
        where = ".".join(p for p in (prefix, path) if p) if path else prefix
        if path.startswith("["):
            where = f"{prefix}{path}"
        gathered.append(ConfigError(where, message + (f" (got {got})" if got else "")))
    return gathered


# ---------------------------------------------------------------------------------------------
# Reading a document: every problem, each with its line


@dataclass(frozen=True)
class ConfigDocument:
    """A config file (or text) read and checked: its settings if it is valid, every problem in
    it (each with its line), and what `config check` needs to go on checking past them.

    `data` is the document after `${VAR}` substitution (empty if it is not a YAML mapping),
    `base_dir` the folder its relative paths are resolved against (None for text without a file:
    paths stay as written), `originals` the written text of each value a variable was substituted
    into, by field path (an error shows that, never the value: see `plain_errors`).
    """

    source: str | None
    settings: Settings | None
    problems: tuple[ConfigError, ...]
    data: Mapping[str, Any]
    base_dir: Path | None = None
    root: yaml.Node | None = None
    originals: Mapping[str, str] = field(default_factory=dict)

    def line_of(self, path: str) -> int | None:
        """The line (1-based) of the key at field `path`, or of the nearest enclosing one that is
        in the file (a missing key points at its section or list item)."""
        node = self.root
        line: int | None = None
        for part in _path_parts(path):
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                        line, node = key.start_mark.line + 1, value
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    return line
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def locate(self, error: ConfigError) -> ConfigError:
        """`error` (each of its problems) with this document's file name and the line filled in."""
        located = [
            problem.located(
                source=self.source,
                line=self.line_of(problem.field) if problem.field else None,
            )
            for problem in error.problems
        ]
        return ConfigError.gather(located)

    @property
    def error(self) -> ConfigError | None:
        """Every problem as one ConfigError (None for a valid document)."""
        return ConfigError.gather(self.problems) if self.problems else None

    @property
    def broken_sections(self) -> frozenset[str]:
        """The top-level sections with a problem (their defaults stand in for them in
        `usable_settings`)."""
        return frozenset(
            str(_path_parts(p.field)[0]) for p in self.problems if _path_parts(p.field)
        )

    def usable_settings(self) -> Settings:
        """The settings, or for a document with problems, its sections that are valid (the others
        at their defaults, and no notifiers): enough to go on checking plugins and paths."""
        if self.settings is not None:
            return self.settings
        kept = {
            key: value
            for key, value in self.data.items()
            if key not in self.broken_sections
            and key != "notifiers"
            and key in Settings.model_fields
        }
        try:
            settings = Settings.model_validate(kept)
        except (ValidationError, ConfigError):
            settings = Settings()
        return resolve_paths(settings, self.base_dir) if self.base_dir else settings

    def notifier_entries(self) -> list[tuple[int, NotifierEntry]]:
        """Each `notifiers[i]` entry that is valid on its own, with its index: the ones whose
        plugin can be checked even when other parts of the file are wrong."""
        if self.settings is not None:
            return list(enumerate(self.settings.notifiers))
        raw = self.data.get("notifiers")
        entries: list[tuple[int, NotifierEntry]] = []
        for index, item in enumerate(raw if isinstance(raw, list) else []):
            try:
                entries.append((index, NotifierEntry.model_validate(item)))
            except (ValidationError, ConfigError):
                continue
        return entries


# Where each Settings made by `parse_config` came from, for errors found later (a notifier's plugin
# options are checked by the fanout) to name the file and line: id(settings) -> its document,
# dropped with the settings. Settings are frozen and carry no field for it.
_DOCUMENTS: dict[int, ConfigDocument] = {}


def document_of(settings: Settings) -> ConfigDocument | None:
    """The document `settings` were read from (None for settings built in code)."""
    document = _DOCUMENTS.get(id(settings))
    return document if document is not None and document.settings is settings else None


def _remember(document: ConfigDocument) -> None:
    if document.settings is not None:
        key = id(document.settings)
        _DOCUMENTS[key] = document
        weakref.finalize(document.settings, _DOCUMENTS.pop, key, None)


def resolve_paths(settings: Settings, base_dir: Path) -> Settings:
    """`settings` with every relative path (storage.path, fanout.plugin_dirs, fanout.outbox_path,
    logging.file, workflows.dirs) taken as relative to `base_dir`: a config file's paths mean
    the same wherever the bot is started from."""

    def resolved(path: Path) -> Path:
        return path if path.is_absolute() else base_dir / path

    storage, fanout, logs, workflows = (
        settings.storage,
        settings.fanout,
        settings.logging,
        settings.workflows,
    )
    return settings.model_copy(
        update={
            "storage": storage.model_copy(update={"path": resolved(storage.path)}),
            "fanout": fanout.model_copy(
                update={
                    "plugin_dirs": tuple(resolved(p) for p in fanout.plugin_dirs),
                    "outbox_path": None
                    if fanout.outbox_path is None
                    else resolved(fanout.outbox_path),
                }
            ),
            "logging": logs.model_copy(
                update={"file": None if logs.file is None else resolved(logs.file)}
            ),
            "workflows": workflows.model_copy(
                update={"dirs": tuple(resolved(p) for p in workflows.dirs)}
            ),
        }
    )


def _compose(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (it knows each key's line) and the data built from it."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        return root, (loader.construct_document(root) if root is not None else None)
    finally:
        loader.dispose()


def _unreadable_yaml(exc: BaseException) -> ConfigError:
    if isinstance(exc, yaml.YAMLError):
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        line = mark.line + 1 if mark is not None else None
        column = f"column {mark.column + 1}: " if mark is not None else ""
        return ConfigError("", f"{column}not valid YAML ({problem})", line=line)
    if isinstance(exc, RecursionError):
        return ConfigError("", "not valid YAML (nested too deeply)")
    # pyyaml's constructors are not error-safe: they raise plain Python errors for a scalar the
    # resolver (or an explicit tag) matched but that does not convert: an integer past Python's
    # 4300-digit limit, the date 2001-13-45, the hex `0x_` (ValueError), `!!int ''`
    # (IndexError), `!!bool maybe` (KeyError), `!!timestamp x` (AttributeError).
    reason = (str(exc).splitlines() or [""])[0] or type(exc).__name__
    return ConfigError("", f"not valid YAML (a value cannot be read: {reason})")


def _duplicate_names(data: Mapping[str, Any]) -> list[ConfigError]:
    """Two notifiers with one name, found in the raw list so they are reported together with
    every other mistake (the model's own check runs only when every entry is valid)."""
    raw = data.get("notifiers")
    seen: set[str] = set()
    problems: list[ConfigError] = []
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str):
            if name in seen:
                problems.append(ConfigError(f"notifiers[{index}].name", f"duplicate name {name!r}"))
            seen.add(name)
    return problems


def parse_config_document(
    text: str,
    *,
    env: Mapping[str, str] | None = None,
    source: str | None = None,
    base_dir: Path | None = None,
) -> ConfigDocument:
    """Read a YAML document and check it against Settings, gathering every problem (each with
    its line) instead of stopping at the first. Never raises for what the document says.

    `base_dir`: the folder relative paths in it are resolved against (the config file's); None
    keeps them as written."""
    environ = os.environ if env is None else env
    found = _Expansion()

    def failed(
        *problems: ConfigError, root: yaml.Node | None = None, data: Any = None
    ) -> ConfigDocument:
        document = ConfigDocument(
            source,
            None,
            (),
            data if isinstance(data, dict) else {},
            base_dir,
            root,
            found.originals,
        )
        unique = {(p.field, p.message): p for p in problems}.values()
        located = sorted((document.locate(p) for p in unique), key=lambda p: p.line or 0)
        return dataclasses.replace(document, problems=tuple(located))

    try:
        root, raw = _compose(text)
    except Exception as exc:  # noqa: BLE001 - see _unreadable_yaml: any failure is a bad document
        return failed(_unreadable_yaml(exc))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return failed(
            ConfigError(
                "", f"the top level must be a mapping of sections, got {type(raw).__name__}"
            )
        )
    for key in raw:
        if not isinstance(key, str):
            return failed(ConfigError(_short(key), "keys must be text"), root=root)
    try:
        expanded = _expand(raw, environ, "", found)
    except ConfigError as exc:
        return failed(exc, root=root)
    except RecursionError:
        return failed(ConfigError("", "the document is nested too deeply"), root=root)
    discord = expanded.get("discord")
    if environ.get("DISCORD_API_BASE"):
        if discord is None:
            discord = expanded["discord"] = {}
        if isinstance(discord, dict) and "api_base" not in discord:
            discord["api_base"] = environ["DISCORD_API_BASE"]
    try:
        settings = Settings.model_validate(expanded)
    except ConfigError as exc:
        problems = [*found.problems, exc]
    except ValidationError as exc:
        problems = [
            *found.problems,
            *plain_errors(exc, data=expanded, model=Settings, originals=found.originals),
        ]
        problems += _duplicate_names(expanded)
    except (TypeError, ValueError) as exc:
        problems = [*found.problems, ConfigError("", str(exc))]
    except RecursionError:
        problems = [*found.problems, ConfigError("", "the document is nested too deeply")]
    else:
        problems = list(found.problems)
        if not problems:
            if base_dir is not None:
                settings = resolve_paths(settings, base_dir)
            document = ConfigDocument(
                source, settings, (), expanded, base_dir, root, found.originals
            )
            _remember(document)
            return document
    # A value that is wrong because its variable is unset is reported once, as the variable.
    unset = {p.field for p in found.problems}
    problems = [
        p
        for p in problems
        if p in found.problems
        or not any(p.field == u or p.field.startswith(f"{u}.") for u in unset)
    ]
    return failed(*problems, root=root, data=expanded)


def parse_config(
    text: str,
    *,
    env: Mapping[str, str] | None = None,
    source: str | None = None,
    base_dir: Path | None = None,
) -> Settings:
    """Validate a YAML document as Settings; raise ConfigError holding every problem (each a
    line of `lines()`, naming the file, the line and the field) if there is any."""
    document = parse_config_document(text, env=env, source=source, base_dir=base_dir)
    if document.settings is None:
        assert document.error is not None
        raise document.error
    return document.settings


def read_config_document(
    path: Path | str, *, env: Mapping[str, str] | None = None
) -> ConfigDocument:
    """Read a config file and check it (`parse_config_document`), its relative paths resolved
    against its folder. Blocking: call it before the event loop starts, or in a thread."""
    file = Path(path)
    source = str(file)
    problem: str | None = None
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = "file not found"
    except IsADirectoryError:
        problem = "is a directory, not a file"
    except PermissionError:
        problem = "permission denied (cannot read the file)"
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text ({exc.reason})"
    except OSError as exc:
        problem = f"cannot read ({exc.strerror})"
    if problem is not None:
        return ConfigDocument(source, None, (ConfigError("", problem, source=source),), {})
    return parse_config_document(text, env=env, source=source, base_dir=file.parent.absolute())


def load_config(path: Path | str, *, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate a config file; raise ConfigError holding every problem. Relative paths
    in it are resolved against the file's folder. Blocking: call it before the event loop
    starts, or in a thread (the reload path does)."""
    document = read_config_document(path, env=env)
    if document.settings is None:
        assert document.error is not None
        raise document.error
    return document.settings


def secret_values(settings: Settings) -> list[str]:
    """Every configured value that must never appear in a log line or a message.

    The bot token, plus any notifier option that looks like a credential or a URL carrying one
    (Apprise URLs hold passwords and webhook tokens in their path). The redactor masks them.
    """
    secrets: list[str] = []
    if settings.discord.token is not None:
        secrets.append(settings.discord.token.get_secret_value())
    if settings.storage.postgres_dsn is not None:
        secrets.extend(dsn_secrets(settings.storage.postgres_dsn.get_secret_value()))

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
_DSN_PASSWORD = re.compile(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.I)


def dsn_secrets(dsn: str) -> list[str]:
    """The parts of a PostgreSQL connection string to mask: its password, in URL form
    (``postgresql://user:pw@host/db``, and ``?password=``) or key=value form (``password=pw``)."""
    if "://" in dsn:
        return _url_secrets(dsn)
    found: list[str] = []
    for match in _DSN_PASSWORD.finditer(dsn):
        value = match.group(1)
        if value.startswith("'"):  # libpq's quoting: \' and \\ inside single quotes
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.append(value)
    return found


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
