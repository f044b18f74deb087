"""The result store: no finished workflow's result is ever lost.

Theory of operation
===================

Layout under ``storage.path`` (directories 0700, files 0600)::

    results/<id>.json      one document per finished workflow: the truth
    results/<id>.delivered how it was delivered (`delivery_mark`), written when it was
    quarantine/            corrupt documents, partial temps, damaged databases: moved aside,
                           never deleted
    index.sqlite3          the index (WAL): running workflows, delivery state, search
    lock                   held by the one process that maintains the store (`store_lock`)
    users.sqlite3          users' own notification settings (``/notify``): `user_settings`;
                           never rebuilt or quarantined (the only copy)

One process at a time
---------------------
The bot's store (``maintain=True``) holds an exclusive ``flock`` on ``lock`` for its whole life,
with its PID written in the file; a second bot on the same folder gets StoreLocked naming that PID
and stops before touching anything. Readers (the CLI's list, show, export) do not need the lock.
The store's blocking work runs on its own bounded threads (`threads`), never in asyncio's
default pool.

Write-ahead
-----------
The runner calls `ResultStore.create` before a workflow starts (a row with status running) and
`ResultStore.finish` before any delivery is tried. When `finish` returns, the result is on disk, or,
if the disk refused it, held in memory, readable through `get`/`read_result`, retried in the
background with exponential backoff (``write_retry_initial`` .. ``write_retry_max``), counted in
``notifier_store_write_failures{error}`` and reported through the ``on_storage_error`` hook. Delivery may then
fail in any way it likes: the result is already safe. `close` gives pending writes a last try.

Atomic writes
-------------
A document is written to ``results/.<id>.<random>.tmp``, fsynced, renamed to ``results/<id>.json``
(never over an existing result) and the directory fsynced. A reader sees no file or the whole file.
Results finishing together are written as a group from one thread (`file_writer`): their fsyncs
are issued together and one directory fsync covers all their renames. A result is written once:
the same outcome again is a no-op, a different one is refused (StoreError), checked under a
per-id lock against memory and, when the writer finds a file under the id, against that file.
Only then is the index row updated; if that fails the file is still the truth. The row's commit is
not fsynced on its own (``index`` says why): a power cut may roll it back to "running", and
reconciliation re-indexes it from the file.
Ids pass `validate_workflow_id` (32 lowercase hex) before they reach any path; paths are built from
the validated id only, never taken from the index or a glob.

Crashes and reconciliation (`ResultStore.reconcile`, run by `open`)
-------------------------------------------------------------------
- crash while writing the temp: the temp is partial -> moved to quarantine/.
- crash after the temp was complete, before the rename: the temp is checked (valid JSON, right
  schema, id matches its name) and renamed into place: the result is recovered, not dropped.
  A temp byte-identical to an existing result is removed (provably a redundant copy); a temp that
  differs from an existing result is quarantined (a result is never overwritten).
- crash after the rename, before the index update (or a power cut that rolled the finished row
  back): the file has no (finished) row -> re-indexed from the document, which carries its own
  row, with the delivery its mark records (no mark: pending; delivering twice beats never).
- the index lost (deleted) or damaged (then moved to quarantine/ by the bot at start): every
  result is re-indexed that way, so nothing delivered is delivered again. A row that says
  "pending" beside a mark (its update failed, or the index is an older copy) takes the mark's
  delivery.
- a row that promises a document (completed, failed, interrupted, cancelled) with no file -> marked
  ``lost`` and counted in ``notifier_workflow_results_lost``. A corrupt file is quarantined (and its row marked
  lost). Rows left ``running`` are the runner's to mark interrupted; reconcile leaves them alone.

Recorded steps (durable workflows)
----------------------------------
A workflow's steps (`ResultStore.record_step`) are frames of its own append-only file,
``steps/<id>.steps`` (`step_log`, which says why files and not index rows): the step's index, name
and value (JSON, configured secrets masked, at most ``runner.max_step_bytes``: `steps`), fsynced
before `record_step` returns, so a step the workflow went on from is never run again after a
crash; a frame torn by a crash is cut off before the next one is written. The same index recorded
again under the same name replaces the value (the process died between the write and the
workflow's going on); under another name it is refused. A workflow found running at start is
resumed by the runner from `steps`, with `note_resume` counting each resume durably
(``workflows.resumes``). Steps stay after `finish` and go with their workflow at retention (the
step file before the row, so a crash between them leaves a row that reconciliation finishes
purging); reconciliation removes the step files of workflows the index holds no row for.

Retention (`ResultStore.purge`, on open and every ``retention_interval`` seconds)
----------------------------------------------------------------------------------
Results that finished more than ``retention_days`` ago go, file and row, in this order: mark the
rows ``purging`` (committed; hidden from every query), delete the files (directory fsynced), delete
the rows. A crash after the mark leaves rows that reconcile finishes deleting, instead of
re-indexing a file that was meant to go or reporting a deleted file as lost. Running workflows are
never purged; results not yet delivered are kept until they are (delivered or undeliverable),
unless the operator asks (``include_undelivered``). The automatic sweeps first ask whether the
clock is believable (`clock_check`): a clock that jumped purges nothing, with a WARNING saying
why, until it is believable again or an operator purges by hand.
"""

from __future__ import annotations

from ..errors import StoreLocked
from .contract import Store
from .document import ResultNotStorable
from .maintenance import ReconcileReport
from .opening import open_store
from .query import ResultQuery
from .result_store import ResultStore, StorageErrorHook
from .sqlite.index import WorkflowExists
from .store_lock import StoreLock
from .user_settings import (
    ChannelSetting,
    ForgetReport,
    PendingCode,
    UserSettings,
    UserSettingsStore,
    UserSummary,
    open_user_settings,
)

__all__ = [
    "ChannelSetting",
    "ForgetReport",
    "PendingCode",
    "ReconcileReport",
    "ResultNotStorable",
    "ResultQuery",
    "ResultStore",
    "StorageErrorHook",
    "Store",
    "StoreLock",
    "StoreLocked",
    "UserSettings",
    "UserSettingsStore",
    "UserSummary",
    "WorkflowExists",
    "open_store",
    "open_user_settings",
]
