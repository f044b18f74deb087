"""A real e-mail through Apprise into a local aiosmtpd server."""

from __future__ import annotations

from pathlib import Path

from notifier.events import Event
from notifier.fanout.outbox import OutboxStatus
from notifier.plugins import PluginContext
from notifier.testing import wait_until
from notifier.testing.smtp import SmtpServer

from .support import make_notice, make_settings, open_fanout, settled


async def test_email_arrives_with_the_configured_subject_and_body(
    tmp_path: Path, context: PluginContext, smtp_server: SmtpServer
) -> None:
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "ops-mail",
                "plugin": "email",
                "on": ["completed"],
                "options": {"urls": [smtp_server.url(to="ops@example.com")]},
                "templates": {
                    "completed": {
                        "title": "Done: {command} for {user}",
                        "body": "Workflow {workflow_id} took {duration}.\n{summary}\n"
                        "{retrieval_command}",
                    }
                },
            }
        ],
    )
    notice = make_notice(Event.COMPLETED, duration_s=754.0, summary="3 pages analysed")
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(notice)
        await wait_until(lambda: len(smtp_server.messages) == 1, what="the e-mail arrived")
        (row,) = await settled(fanout, 1)

    message = smtp_server.messages[0]
    assert message["Subject"] == "Done: autointel for alice"
    assert message["From"] == "bot@example.com"
    assert message["To"] == "ops@example.com"
    body = message.get_content()
    assert f"Workflow {notice.workflow_id} took 12m 34s." in body
    assert "3 pages analysed" in body
    assert f"/retrieve_results workflow_id:{notice.workflow_id}" in body
    # Apprise's per-URL result is recorded with the row.
    assert row.status is OutboxStatus.SENT
    assert row.attempts == 1
    (target,) = row.targets.values()
    assert target["status"] == "sent"
    assert target["attempts"] == 1
    assert target["target"].startswith("mailto://")


async def test_two_emails_in_a_row_both_arrive_from_fresh_apprise_objects(
    tmp_path: Path, context: PluginContext, smtp_server: SmtpServer
) -> None:
    settings = make_settings(
        tmp_path,
        [
            {
                "name": "ops-mail",
                "plugin": "email",
                "on": ["started", "completed"],
                "options": {"urls": smtp_server.url()},
            }
        ],
    )
    async with open_fanout(settings, context) as fanout:
        await fanout.emit(make_notice(Event.STARTED))
        await fanout.emit(make_notice(Event.COMPLETED))
        rows = await settled(fanout, 2)
    assert {r.status for r in rows} == {OutboxStatus.SENT}
    subjects = sorted(str(m["Subject"]) for m in smtp_server.messages)
    assert subjects == ["Completed: autointel", "Started: autointel"]
