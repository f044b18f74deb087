"""config.yaml loading: every bad input is one line naming the field; good input round-trips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from notifier.config import Settings, load_config, parse_config, secret_values
from notifier.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("document", "env", "field", "line", "fragment"),
    [
        ("discord:\n  tokn: x\n", {}, "discord.tokn", 2, "unknown key, did you mean 'token'?"),
        ("bogus: 1\n", {}, "bogus", 1, "unknown key"),
        ("discord:\n  interaction_ttl: soon\n", {}, "discord.interaction_ttl", 2, "(got 'soon')"),
        ("discord:\n  token: ${BOT_TOKEN}\n", {}, "discord.token", 2, "BOT_TOKEN is not set"),
        ("storage:\n  retention_days: -3\n", {}, "storage.retention_days", 2, "greater than 0"),
        ("metrics:\n  listen: nowhere\n", {}, "metrics.listen", 2, "HOST:PORT"),
        ("discord:\n  api_base: ftp://x\n", {}, "discord.api_base", 2, "http(s) URL"),
        (
            "notifiers:\n"
            "  - {name: a, plugin: email, on: [started]}\n"
            "  - {name: b, plugin: email, on: [completed]}\n"
            "  - {name: c, plugin: email, on: [complete]}\n",
            {},
            "notifiers[2].on",
            4,
            "unknown event 'complete'",
        ),
        (
            "notifiers:\n  - {name: a, plugin: email, on: [started]}\n"
            "  - {name: a, plugin: dm, on: [failed]}\n",
            {},
            "notifiers[1].name",
            3,
            "duplicate name 'a'",
        ),
        ("notifiers:\n  - {name: a, on: [started]}\n", {}, "notifiers[0].plugin", 2, "is required"),
        ("storage:\n  backend: postgres\n", {}, "storage", 1, "postgres_dsn is not set"),
        (
            "storage:\n  backend: mysql\n",
            {},
            "storage.backend",
            2,
            "'sqlite' or 'postgres' (got 'mysql')",
        ),
        (
            "discord:\n  interaction_ttl: 30\n  handoff_before: 60\n",
            {},
            "discord",
            1,
            "shorter than interaction_ttl",
        ),
        ("distributed:\n  worker_nice: 25\n", {}, "distributed.worker_nice", 2, "19"),
        (
            "user_notifications:\n  email_notifier: mail\n",
            {},
            "user_notifications.email_notifier",
            2,
            "no notifier is named 'mail'",
        ),
        (
            "user_notifications:\n  email_notifier: ops\n"
            "notifiers:\n  - {name: ops, plugin: dm, on: [failed]}\n",
            {},
            "user_notifications.email_notifier",
            2,
            "it must be an `email` one",
        ),
        (
            "user_notifications:\n  allow: [dm, sms]\n",
            {},
            "user_notifications.allow[1]",
            2,
            "sms",
        ),
    ],
)
def test_bad_documents_name_the_line_and_the_field(
    document: str, env: dict[str, str], field: str, line: int, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(document, env=env, source="config.yaml")
    error = caught.value
    assert error.field == field
    assert fragment in str(error)
    assert "\n" not in str(error)
    assert str(error).startswith(f"config.yaml:{line}: {field}: ")
    assert error.lines() == [str(error)]


def test_environment_substitution_with_defaults() -> None:
    document = (
        "discord:\n  token: ${BOT_TOKEN}\n  api_base: ${API:-http://127.0.0.1:1/api/v10}\n"
        "storage:\n  path: ${DATA:-/tmp/x}/results\n"
    )
    settings = parse_config(document, env={"BOT_TOKEN": "abc.def.ghi", "DATA": "/srv"})
    assert settings.discord.token is not None
    assert settings.discord.token.get_secret_value() == "abc.def.ghi"
    assert settings.discord.api_base == "http://127.0.0.1:1/api/v10"
    assert str(settings.storage.path) == "/srv/results"
    assert "abc.def.ghi" not in repr(settings)  # SecretStr keeps it out of reprs


def test_yaml_on_key_is_not_a_boolean() -> None:
    settings = parse_config("notifiers:\n  - name: a\n    plugin: email\n    on: [started]\n")
    assert [e.value for e in settings.notifiers[0].on] == ["started"]


def test_discord_api_base_from_environment() -> None:
    settings = parse_config("{}", env={"DISCORD_API_BASE": "http://127.0.0.1:9/api/v10"})
    assert settings.discord.api_base == "http://127.0.0.1:9/api/v10"
    explicit = parse_config(
        "discord:\n  api_base: http://proxy:8080/api/v10\n",
        env={"DISCORD_API_BASE": "http://127.0.0.1:9/api/v10"},
    )
    assert explicit.discord.api_base == "http://proxy:8080/api/v10"


def test_example_config_is_valid_and_documents_every_key() -> None:
    settings = load_config(ROOT / "config.yaml", env={})
    assert settings.discord.token is None  # no token: the demo runs against the emulator
    text = (ROOT / "config.yaml").read_text()
    for section, model in Settings.model_fields.items():
        assert f"\n{section}:" in f"\n{text}", section
        annotation = model.annotation
        fields = getattr(annotation, "model_fields", {})
        for key in fields:
            assert f"  {key}:" in text, f"{section}.{key} is not documented in config.yaml"


@pytest.mark.parametrize("kind", ["missing", "directory", "unreadable", "binary"])
def test_unreadable_files(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "config.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "unreadable":
        # A symlink loop: unreadable even for root (who reads mode-0 files).
        path.symlink_to(tmp_path / "loop")
        (tmp_path / "loop").symlink_to(path)
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_secret_values_cover_token_and_url_credentials() -> None:
    settings = parse_config(
        "discord:\n  token: ${T}\n"
        "notifiers:\n"
        "  - name: mail\n    plugin: email\n    on: [failed]\n"
        "    options: {urls: ['mailtos://ops:hunter2secret@smtp.example.com']}\n"
        "  - name: hook\n    plugin: discord_webhook\n    on: [failed]\n"
        "    options: {url: 'discord://123/AbCdEfGhIjKlMnOpQrStUvWx'}\n",
        env={"T": "bot-token-value"},
    )
    secrets = secret_values(settings)
    assert "bot-token-value" in secrets
    assert "hunter2secret" in secrets
    assert "AbCdEfGhIjKlMnOpQrStUvWx" in secrets


@pytest.mark.parametrize(
    ("dsn", "password"),
    [
        ("postgresql://notifier:${PG_PW}@db:5432/notifier", "pg-pass-1"),
        ("host=db user=notifier password=${PG_PW} dbname=notifier", "pg-pass-1"),
        ("host=db password='${PG_PW}' dbname=notifier", "pg pass 'quoted'"),
        ("postgresql://db/notifier?user=n&password=${PG_PW}", "pg-pass-2"),
    ],
)
def test_the_postgres_password_is_a_secret_in_every_dsn_form(dsn: str, password: str) -> None:
    quoted = password.replace("'", "\\'")
    settings = parse_config(
        f'storage:\n  backend: postgres\n  postgres_dsn: "{dsn}"\n',
        env={"PG_PW": quoted if "'" in dsn else password},
    )
    assert settings.storage.postgres_dsn is not None
    assert password not in repr(settings)
    assert password in secret_values(settings)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("discord:\n  tokn: x\n", ["config.yaml:2: discord.tokn: unknown key"]),
        (
            "notifiers: [{name: a}]\n",
            ["config.yaml:1: notifiers[0].plugin: is required", "config.yaml:1: notifiers[0].on"],
        ),
        (
            "logging:\n  level: loud\nrunner:\n  max_concurrent: many\n",
            [
                "config.yaml:2: logging.level: must be one of 'TRACE', 'DEBUG', 'INFO'",
                "config.yaml:4: runner.max_concurrent: must be a whole number (got 'many')",
            ],
        ),
    ],
)
def test_bot_exits_2_with_one_line_per_mistake_and_no_traceback(
    tmp_path: Path, document: str, expected: list[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(document)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bot.py"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(expected), proc.stderr
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(f"error: {config.parent}/{start}"), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "Input should" not in proc.stderr


@pytest.mark.parametrize("written", ["info", "Info", " debug ", "WARNING"])
def test_logging_level_is_read_in_any_case(written: str) -> None:
    settings = parse_config(f"logging:\n  level: '{written}'\n")
    assert settings.logging.level == written.strip().upper()


def test_an_unknown_logging_level_lists_the_valid_ones_as_written() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("logging:\n  level: verbose\n", source="config.yaml")
    assert str(caught.value) == (
        "config.yaml:2: logging.level: must be one of 'TRACE', 'DEBUG', 'INFO', 'SUCCESS', "
        "'WARNING', 'ERROR' or 'CRITICAL' (got 'verbose')"
    )


PATHS_DOCUMENT = """\
storage: {path: ./data}
logging: {file: logs/bot.log}
workflows: {dirs: [workflows, /opt/shared/workflows]}
fanout:
  plugin_dirs: [plugins, ../common/plugins]
  outbox_path: state/outbox.sqlite3
"""


def test_relative_paths_in_a_config_file_are_relative_to_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "notifier"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(PATHS_DOCUMENT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where an operator happens to start the bot from

    settings = load_config("../etc/notifier/config.yaml", env={})

    here = elsewhere / "../etc/notifier"
    assert settings.storage.path.resolve() == folder / "data"
    assert settings.logging.file is not None
    assert settings.logging.file.resolve() == folder / "logs/bot.log"
    assert [p.resolve() for p in settings.workflows.dirs] == [
        folder / "workflows",
        Path("/opt/shared/workflows"),
    ]
    assert [p.resolve() for p in settings.fanout.plugin_dirs] == [
        folder / "plugins",
        tmp_path / "etc/common/plugins",
    ]
    assert settings.fanout.outbox_path == here.absolute() / "state/outbox.sqlite3"
    # Keys the file does not set resolve against its folder too (the defaults are relative).
    defaults = tmp_path / "defaults.yaml"
    defaults.write_text("{}\n")
    assert load_config(defaults, env={}).storage.path == tmp_path / "data"


def test_config_text_without_a_file_keeps_paths_as_written() -> None:
    settings = parse_config(PATHS_DOCUMENT, env={})
    assert settings.storage.path == Path("data")
    assert settings.fanout.plugin_dirs == (Path("plugins"), Path("../common/plugins"))
    assert settings.fanout.outbox_path == Path("state/outbox.sqlite3")


def test_every_mistake_of_a_file_is_reported_at_once_in_plain_words(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "discord:\n"
        "  guild_ids: 12345\n"  # 2
        "runner:\n"
        "  max_concurrent: 2.5\n"  # 4
        "  shutdown_grace: -1\n"  # 5
        "fanout:\n"
        "  strict: maybe\n"  # 7
        "  plugin_dirs: [plugins]\n"
        "  tmeout: 3\n"  # 9
        "notifiers:\n"
        "  - name: ops mail\n"  # 11
        "    plugin: email\n"
        "    on: [failed]\n"
        "    options: {urls: ['${SMTP_URL}']}\n"  # 14
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    assert caught.value.lines() == [
        f"{config}:2: discord.guild_ids: must be a list (got 12345)",
        f"{config}:4: runner.max_concurrent: must be a whole number (got 2.5)",
        f"{config}:5: runner.shutdown_grace: must be at least 0 (got -1)",
        f"{config}:7: fanout.strict: must be true or false (got 'maybe')",
        f"{config}:9: fanout.tmeout: unknown key, did you mean 'timeout'?",
        f"{config}:11: notifiers[0].name: must be letters, digits, '.', '-' or '_' only "
        "(no spaces) (got 'ops mail')",
        f"{config}:14: notifiers[0].options.urls[0]: environment variable SMTP_URL is not set",
    ]
    assert (
        str(caught.value)
        == f"{config}:2: discord.guild_ids: must be a list (got 12345) (and 6 more mistakes)"
    )


def test_a_value_from_the_environment_is_shown_as_its_variable_never_its_value() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "runner:\n  max_per_user: ${LIMIT}\nmetrics:\n  listen: ${LISTEN}\n",
            env={"LIMIT": "s3cr3t-limit", "LISTEN": "s3cr3t-listen"},
            source="config.yaml",
        )
    text = "\n".join(caught.value.lines())
    assert "s3cr3t" not in text
    assert "config.yaml:2: runner.max_per_user: must be a whole number (got '${LIMIT}')" in text
    assert "config.yaml:4: metrics.listen: must be HOST:PORT, got '${LISTEN}'" in text


@pytest.mark.parametrize(
    ("discord", "line"),
    [
        (
            "  shard_ids: [0]\n",
            "config.yaml:2: discord.shard_ids: needs discord.shard_count (how many shards the "
            "bot has across all processes)",
        ),
        (
            "  shard_count: 2\n  shard_ids: [0, 2]\n",
            "config.yaml:3: discord.shard_ids: shard 2 does not exist: with shard_count 2 the "
            "ids are 0 to 1",
        ),
        (
            "  shard_count: 2\n  shard_ids: [-1]\n",
            "config.yaml:3: discord.shard_ids: shard -1 does not exist: with shard_count 2 the "
            "ids are 0 to 1",
        ),
        (
            "  shard_count: 4\n  shard_ids: [3, 1, 3]\n",
            "config.yaml:3: discord.shard_ids: shard 3 is listed twice",
        ),
        (
            "  shard_count: 2\n  shard_ids: []\n",
            "config.yaml:3: discord.shard_ids: is empty; list this process's shards, or leave it "
            "out to run all of them",
        ),
        ("  shard_count: 0\n", "config.yaml:2: discord.shard_count: must be at least 1 (got 0)"),
        (
            "  shard_count: 2\n  shard_ids: [one]\n",
            "config.yaml:3: discord.shard_ids[0]: must be a whole number (got 'one')",
        ),
        (
            "  identify_window: 0\n",
            "config.yaml:2: discord.identify_window: must be greater than 0",
        ),
    ],
    ids=[
        "ids-without-count",
        "id-beyond-count",
        "negative-id",
        "id-twice",
        "no-ids",
        "zero-shards",
        "not-a-number",
        "no-window",
    ],
)
def test_shard_settings_that_cannot_work_are_refused_naming_the_field(
    discord: str, line: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"discord:\n{discord}", source="config.yaml")
    assert caught.value.lines() == [line]


@pytest.mark.parametrize(
    ("discord", "env", "count", "ids"),
    [
        ("{}", {}, None, None),
        ("{shard_count: 4}", {}, 4, None),
        ("{shard_count: 4, shard_ids: [2, 0]}", {}, 4, (2, 0)),
        # One file for every process, each given its shards by the environment.
        (
            "{shard_count: '${COUNT:-}', shard_ids: '${IDS:-}'}",
            {"COUNT": "4", "IDS": "1, 3"},
            4,
            (1, 3),
        ),
        ("{shard_count: '${COUNT:-}', shard_ids: '${IDS:-}'}", {}, None, None),
    ],
    ids=["unsharded", "all-shards", "some-shards", "from-environment", "environment-unset"],
)
def test_shard_settings_say_which_shards_this_process_holds(
    discord: str, env: dict[str, str], count: int | None, ids: tuple[int, ...] | None
) -> None:
    settings = parse_config(f"discord: {discord}\n", env=env).discord
    assert (settings.shard_count, settings.shard_ids) == (count, ids)
