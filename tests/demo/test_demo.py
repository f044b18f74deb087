"""Issue #8: the README's first command, with no Discord token, plays the whole resilience story.

`scripts/run-bot` runs from the project root with this environment minus `DISCORD_TOKEN` (and
`DISCORD_API_BASE`), exactly as the README says; the test reads the timeline it prints. It takes
about 40 s: the story needs a workflow that outlives a 20 s interaction token. `--keep-running` is
tested with the documented `--demo-ttl 5`, which scales the same story down.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import subprocess
from pathlib import Path

import aiohttp
import pytest

# tests/docs, by the name pytest gives test packages (their parent, tests/, is on sys.path).
from docs.readme import ROOT, block
from docs.support import script_env

from notifier.testing import CapturedProcess

pytestmark = pytest.mark.demo_story

ID = r"[0-9a-f]{32}"
STAMP = r"^\[\d\d:\d\d\.\d\] "

# The timeline's main line, in the order the story must tell it.
IN_ORDER = [
    r"/autointel deferred \(alice sees 'notifier-bot is thinking\.\.\.'\), \d+ ms after the "
    r"command; Discord allows 3 s",
    rf"workflow {ID} stored as running, started in the background",
    r"timeout warning shown privately to alice: estimated 15m 00s, the token lives 20 s here",
    r"progress \d+%: .*\(editing the 'thinking' message with the interaction token\)$",
    r'hand-off posted while the token had (?P<left>\d+\.\d) s left: "\.\.\.progress and the '
    r'result will continue in #general\."$',
    r"interaction token expired \(Discord would now answer 401, code 50027\); calls made with "
    r"it since: 0$",
    rf"result persisted: completed, results/{ID}\.json \([\d,]+ bytes\), before any delivery$",
    r"result delivered in #general with the bot token, mentioning alice \(\d+ embeds?",
    r"/retrieve_results by alice: her result, read from the store, as the command's reply",
    r'/retrieve_results by bob: refused, "No workflow with that id is available to you\." '
    r"\(the same answer as for an id that does not exist\)$",
]
# Lines whose place depends on a sink or a poll: (pattern, must come after, must come before).
PLACED = [
    (r'webhook received in #ops: "Long workflow: autointel may take 15m 00s"', 0, 8),
    (r"progress \d+%: .*\(now a status message in #general, edited with the bot token\)$", 4, 7),
    (r'webhook received in #ops: "Handed off: autointel"', 0, 8),
    (r'webhook received in #ops: "Completed: autointel"', 4, 8),
    (r'email received by ops@example\.com: subject "autointel finished for alice in \d+s"', 4, 8),
]
SUMMARY = [
    r"^  /autointel depth:deep ran \d+ s; its interaction token lived 20 s\.$",
    r"^  - calls made with the expired token: 0 \(answers with code 50027: 0\)$",
    rf"^  - result written to disk before delivery: .*/data/results/{ID}\.json$",
    r"^  - delivered: in #general \(bot token\)$",
    r"^  - operators told: 1 e-mail\(s\), 3 webhook post\(s\) in #ops$",
    r"^  - /retrieve_results: the owner gets the result; anyone else gets the same answer as "
    r"for an unknown id$",
    r"^  Discord API requests: \d+ \(0 answered with an error\)$",
]


def readme_first_command() -> list[str]:
    first = block("sh", "scripts/run-bot").text.splitlines()[0]
    return shlex.split(first.split("#", 1)[0])


def demo_folders(tmpdir: Path) -> list[Path]:
    """What a demo left in the temporary directory."""
    return sorted(tmpdir.glob("notifier-demo-*"))


def timeline(stdout: str) -> list[str]:
    return [re.sub(STAMP, "", line) for line in stdout.splitlines() if re.match(STAMP, line)]


def index_of(lines: list[str], pattern: str) -> int:
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert len(found) == 1, f"{len(found)} timeline lines match {pattern!r}:\n" + "\n".join(lines)
    return found[0]


def normalised(line: str) -> str:
    line = re.sub(STAMP, "[T] ", line)
    line = re.sub(ID, "<id>", line)
    line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", line)
    return re.sub(r"\d[\d,.]*", "<n>", line)


def test_the_readme_command_plays_the_whole_story(tmp_path: Path) -> None:
    argv = readme_first_command()
    assert argv == ["scripts/run-bot"]
    done = subprocess.run(
        argv,
        cwd=ROOT,
        env=script_env(TMPDIR=str(tmp_path)),  # the demo's temporary store lands here
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard only; the story takes about 40 s
    )
    report = f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
    assert done.returncode == 0, report
    assert demo_folders(tmp_path) == [], "the demo left its folder behind"
    assert "Traceback" not in done.stdout + done.stderr, report
    assert "| ERROR" not in done.stderr, report
    lines = timeline(done.stdout)

    places = [index_of(lines, pattern) for pattern in IN_ORDER]
    assert places == sorted(places), "the timeline is out of order:\n" + "\n".join(lines)
    handoff = re.search(IN_ORDER[4], lines[places[4]])
    assert handoff is not None and float(handoff.group("left")) > 0
    for pattern, after, before in PLACED:
        at = index_of(lines, pattern)
        assert places[after] < at < places[before], (pattern, "\n".join(lines))

    summary = done.stdout[done.stdout.index("\nSummary\n") :].splitlines()
    for pattern in SUMMARY:
        assert any(re.search(pattern, line) for line in summary), (pattern, summary)

    # The README's sample output is a real run: each of its lines is one this run printed too
    # (numbers, ids and ports aside; progress lines vary with timing, their place does not).
    printed = {normalised(line) for line in done.stdout.splitlines()}
    suffixes = {re.sub(r".*\(", "(", n) for n in printed if "progress" in n}
    for line in block("text", "alice runs /autointel").text.splitlines():
        if "] progress " in line:
            if "(" in line:
                assert re.sub(r".*\(", "(", normalised(line)) in suffixes, line
            continue
        assert normalised(line) in printed, line


async def test_keep_running_stays_up_to_look_around_until_ctrl_c(tmp_path: Path) -> None:
    argv = [str(ROOT / "scripts" / "run-bot"), "--keep-running", "--demo-ttl", "5"]
    env = script_env(TMPDIR=str(tmp_path))
    async with CapturedProcess.running(*argv, env=env, cwd=ROOT) as demo:
        await demo.wait_until(
            lambda: any("To look around" in line for line in demo.stdout),
            what="the exploration hints",
            timeout_s=300,
        )
        out = "".join(demo.stdout)
        (workflow_id,) = re.findall(rf"workflow ({ID}) stored as running", out)
        assert "interaction tokens live 5 s here" in out
        assert "the token lives 5 s here" in out
        looking = out[out.index("To look around") :]
        hints = {
            m.group(1): m.group(2) for m in re.finditer(r"^  (\S.+?)\s{2,}(\S.*)$", looking, re.M)
        }

        results = await run(hints["the stored results"])
        assert workflow_id in results.stdout and "delivered" in results.stdout
        outbox = await run(hints["the notifier outbox"])
        assert "(4 shown; 0 pending, 4 sent, 0 failed, 0 skipped)" in outbox.stdout

        curl_metrics = shlex.split(hints["the bot's metrics"])
        curl_general = shlex.split(hints["messages in #general"])
        headers = dict([curl_general[curl_general.index("-H") + 1].split(": ", 1)])
        async with aiohttp.ClientSession() as http:
            async with http.get(curl_metrics[-1]) as response:
                metrics = await response.text()
            async with http.get(curl_general[-1], headers=headers) as response:
                assert response.status == 200
                messages = await response.json()
        assert 'notifier_workflow_delivery_total{rung="channel"} 1.0' in metrics
        assert any(workflow_id in json.dumps(m) for m in messages)

        assert demo.process.returncode is None
        demo.send(signal.SIGINT)  # Ctrl-C
        assert await demo.finish() == 0
    assert "stopping:" in "".join(demo.stdout)
    assert "Traceback" not in demo.output()
    assert demo_folders(tmp_path) == []  # its store went with it


async def run(command: str) -> subprocess.CompletedProcess[str]:
    """A command as printed by the demo, run from the project root."""
    done = await asyncio.to_thread(
        subprocess.run, shlex.split(command), cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, (command, done.stderr)
    return done
