"""Workflow ids are validated before they come near the filesystem or the database (on every
backend: tests/store/conftest.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

import pytest

from notifier.config import StorageSettings
from notifier.errors import InvalidWorkflowId
from notifier.records import WorkflowStatus
from notifier.store import Store

from .support import EXAMPLE_RESULT, contents, document_ids, document_path, finished, make_record

BAD_IDS = [
    pytest.param("../../etc/passwd", id="dot-dot"),
    pytest.param("", id="empty"),
    pytest.param("*", id="glob"),
    pytest.param("a" * 31 + "*", id="glob-32"),
    pytest.param("A" * 10_240, id="10KB"),
    pytest.param("ａ" * 32, id="fullwidth-unicode"),
    pytest.param("é" * 32, id="unicode"),
    pytest.param("a" * 31 + "/", id="slash"),
    pytest.param("a" * 30 + "\x00b", id="nul"),
    pytest.param("g" * 32, id="not-hex"),
    pytest.param("a" * 33, id="too-long"),
    pytest.param(".." + "a" * 30, id="dots"),
]

Operation = Callable[[Store, str], Awaitable[object]]

OPERATIONS: list[tuple[str, Operation]] = [
    ("create", lambda s, w: s.create(make_record(workflow_id=w))),
    (
        "finish",
        lambda s, w: s.finish(w, status=WorkflowStatus.COMPLETED, result=EXAMPLE_RESULT),
    ),
    ("update_progress", lambda s, w: s.update_progress(w, stage="x", progress=0.5)),
    ("get", lambda s, w: s.get(w)),
    ("read_result", lambda s, w: s.read_result(w)),
    ("mark_delivered", lambda s, w: s.mark_delivered(w, "dm")),
    ("mark_undeliverable", lambda s, w: s.mark_undeliverable(w, "no")),
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_a_malformed_id_is_refused_and_touches_no_file(
    store: Store, store_settings: StorageSettings, bad_id: str
) -> None:
    await finished(store)  # something stored that must stay as it is
    before = await contents(store_settings)

    for name, operation in OPERATIONS:
        with pytest.raises(InvalidWorkflowId):
            await operation(store, bad_id)
        assert await contents(store_settings) == before, f"{name} changed what is stored"


@pytest.mark.parametrize("bad_id", [None, 12345, b"a" * 32])
async def test_an_id_that_is_not_text_is_refused(store: Store, bad_id: object) -> None:
    with pytest.raises(InvalidWorkflowId):
        await store.get(bad_id)  # type: ignore[arg-type]


async def test_a_pasted_dashed_uuid_finds_the_workflow(store: Store) -> None:
    stored = await finished(store)
    w = stored.workflow_id
    dashed = f"{w[:8]}-{w[8:12]}-{w[12:16]}-{w[16:20]}-{w[20:]}".upper()

    got = await store.get(f"  {dashed} ")

    assert got is not None and got.workflow_id == w
    assert (await store.read_result(dashed))["workflow_id"] == w


async def test_a_dashed_id_is_stored_normalised(
    store: Store, store_settings: StorageSettings
) -> None:
    record = make_record(workflow_id="0123ABCD-0000-4000-8000-00000000beef")
    await store.create(record)
    stored = (
        await store.finish(record.workflow_id, status=WorkflowStatus.COMPLETED, result={})
    ).record

    assert stored.workflow_id == "0123abcd000040008000" + "00000000beef"
    assert dataclasses.replace(stored).path == document_path(store_settings, stored.workflow_id)
    assert await document_ids(store_settings) == [stored.workflow_id]
