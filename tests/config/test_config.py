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
    ("document", "env", "field", "fragment"),
    [
        ("discord:\n  tokn: x\n", {}, "discord.tokn", "unknown key"),
        ("bogus: 1\n", {}, "bogus", "unknown key"),
        ("discord:\n  interaction_ttl: soon\n", {}, "discord.interaction_ttl", "'soon'"),
        ("discord:\n  token: ${BOT_TOKEN}\n", {}, "discord.token", "BOT_TOKEN is not set"),
        ("storage:\n  retention_days: -3\n", {}, "storage.retention_days", "greater than 0"),
        ("metrics:\n  listen: nowhere\n", {}, "metrics.listen", "HOST:PORT"),
        ("discord:\n  api_base: ftp://x\n", {}, "discord.api_base", "http(s) URL"),
        (
            "notifiers:\n"
            "  - {name: a, plugin: email, on: [started]}\n"
            "  - {name: b, plugin: email, on: [completed]}\n"
            "  - {name: c, plugin: email, on: [complete]}\n",
            {},
            "notifiers[2].on",
            "unknown event 'complete'",
        ),
        (
            "notifiers:\n  - {name: a, plugin: email, on: [started]}\n"
            "  - {name: a, plugin: dm, on: [failed]}\n",
            {},
            "notifiers[1].name",
            "duplicate name 'a'",
        ),
        ("notifiers:\n  - {name: a, on: [started]}\n", {}, "notifiers[0].plugin", "missing"),
        (
            "discord:\n  interaction_ttl: 30\n  handoff_before: 60\n",
            {},
            "discord",
            "shorter than interaction_ttl",
        ),
    ],
)
def test_bad_documents_name_the_field(
    document: str, env: dict[str, str], field: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(document, env=env, source="config.yaml")
    error = caught.value
    assert error.field == field
    assert fragment in str(error)
    assert "\n" not in str(error)
    assert str(error).startswith(f"config.yaml: {field}")


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
    ("document", "field"),
    [("discord:\n  tokn: x\n", "discord.tokn"), ("notifiers: [{name: a}]\n", "notifiers[0]")],
)
def test_bot_exits_non_zero_with_one_line_and_no_traceback(
    tmp_path: Path, document: str, field: str
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
    assert len(lines) == 1, proc.stderr
    assert field in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
