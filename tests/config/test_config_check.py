"""`notifier config check` through the real CLI, in a subprocess, as an operator runs it before a
deploy (issue 16): every mistake at once, one `FILE:LINE: path: what is wrong` line each, in plain
words, exit 2; `ok: N notifiers, M workflows` and exit 0 for a good file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from notifier.testing.processes import child_env

ROOT = Path(__file__).resolve().parents[2]

PYDANTIC_WORDS = ("Input should", "Extra inputs", "Field required", "validation error", "type=")


def config_check(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=child_env(**env),
    )


FIVE_MISTAKES = """\
runner:
  max_concurent: 4
logging:
  level: loud
fanout:
  plugin_dirs: [my-plugins]
workflows:
  autointell: {enabled: false}
notifiers:
  - name: ops
    plugin: email
    on: [failed]
    options: {urls: ["mailto://127.0.0.1:25?from=bot@example.com&to=ops@example.com"]}
    templates:
      failed: {body: "{command} failed after {elapsed}"}
"""


def test_five_different_mistakes_are_five_lines_with_their_line_numbers(tmp_path: Path) -> None:
    folder = tmp_path / "deploy"
    folder.mkdir()
    (folder / "config.yaml").write_text(FIVE_MISTAKES, encoding="utf-8")

    # Run from elsewhere: the file's relative paths are its folder's.
    proc = config_check("config", "check", "--config", "deploy/config.yaml", cwd=tmp_path)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "deploy/config.yaml:2: runner.max_concurent: unknown key, did you mean 'max_concurrent'?",
        "deploy/config.yaml:4: logging.level: must be one of 'TRACE', 'DEBUG', 'INFO', "
        "'SUCCESS', 'WARNING', 'ERROR' or 'CRITICAL' (got 'loud')",
        f"deploy/config.yaml:6: fanout.plugin_dirs[0]: folder not found "
        f"(got '{folder}/my-plugins')",
        "deploy/config.yaml:8: workflows.autointell: no workflow is named 'autointell', did you "
        "mean 'autointel'? (found: autointel)",
        "deploy/config.yaml:15: notifiers[0].templates.failed.body: unknown template field "
        "{elapsed} (known: channel_id, command, depth, duration, error, estimate, event, "
        "guild_id, progress, retrieval_command, rung, stage, summary, url, user, user_id, "
        "user_mention, workflow_id)",
    ]
    assert proc.stderr == ""
    assert "Traceback" not in proc.stdout + proc.stderr


def test_every_notifier_mistake_is_named_and_a_secret_from_the_environment_never_shown(
    tmp_path: Path,
) -> None:
    (tmp_path / "config.yaml").write_text(
        "notifiers:\n"
        "  - name: phone\n"
        "    plugin: emial\n"  # 3
        "    on: [completed]\n"
        "  - name: ops\n"
        "    plugin: email\n"
        "    on: [completed, failed]\n"
        "    options:\n"
        '      urls: ["${OPS_HOOK}"]\n'  # 9
        "      tls: yes\n"  # 10
        "  - name: warn\n"
        "    plugin: timeout_warning\n"
        "    on: [completed]\n"  # 13
        "    options: {threshold_s: soon, urls: ['json://127.0.0.1:9/w']}\n",  # 14
        encoding="utf-8",
    )
    secret = "s3cr3t-pass"
    proc = config_check(
        "--config",
        "config.yaml",
        "config",
        "check",
        cwd=tmp_path,
        OPS_HOOK=f"json://bot:{secret}@hooks.example.com/x",
    )

    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [
        "config.yaml:3: notifiers[0].plugin: unknown plugin 'emial', did you mean 'email'?",
        "config.yaml:9: notifiers[1].options.urls[0]: must be a mailto:// or mailtos:// URL, "
        "got '${OPS_HOOK}'",
        "config.yaml:10: notifiers[1].options.tls: unknown option for plugin 'email'",
        "config.yaml:13: notifiers[2].on: plugin 'timeout_warning' does not accept completed "
        "(accepts: started)",
        "config.yaml:14: notifiers[2].options.threshold_s: must be a number (got 'soon')",
    ]
    assert secret not in proc.stdout + proc.stderr
    assert "hooks.example.com" not in proc.stdout + proc.stderr
    assert not any(word in proc.stdout for word in PYDANTIC_WORDS)


def test_a_broken_plugin_file_is_named_with_its_line(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "pager.py").write_text("def broken(:\n", encoding="utf-8")
    (tmp_path / "config.yaml").write_text("fanout:\n  plugin_dirs: [plugins]\n")

    proc = config_check("config", "check", cwd=tmp_path)

    assert proc.returncode == 2
    assert proc.stdout.splitlines() == [
        f"{plugins / 'pager.py'}: failed to import: SyntaxError: invalid syntax (line 1)"
    ]


def test_the_repositorys_config_yaml_is_ok(tmp_path: Path) -> None:
    proc = config_check("config", "check", "--config", str(ROOT / "config.yaml"), cwd=tmp_path)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.fullmatch(r"ok: 0 notifiers, \d+ workflows\n", proc.stdout)
    assert proc.stderr == ""


def test_a_file_that_is_not_there_or_not_yaml_is_one_line(tmp_path: Path) -> None:
    missing = config_check("config", "check", "--config", "nope.yaml", cwd=tmp_path)
    (tmp_path / "broken.yaml").write_text("discord:\n  token: [unclosed\n")
    broken = config_check("config", "check", "--config", "broken.yaml", cwd=tmp_path)

    assert (missing.returncode, missing.stdout) == (2, "nope.yaml: file not found\n")
    assert broken.returncode == 2
    assert re.fullmatch(r"broken\.yaml:3: column \d+: not valid YAML \(.*\)\n", broken.stdout)


def test_the_default_plugin_folder_may_be_absent_as_at_start(tmp_path: Path) -> None:
    """`plugins` beside the file is where an operator's own plugins would go; without any, a
    start skips it, and so does the check (a folder named otherwise must exist: see above)."""
    (tmp_path / "config.yaml").write_text("fanout:\n  plugin_dirs: [plugins]\n")

    proc = config_check("config", "check", cwd=tmp_path)

    assert proc.returncode == 0, proc.stdout
    assert re.fullmatch(r"ok: 0 notifiers, \d+ workflows\n", proc.stdout)
