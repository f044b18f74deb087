"""Reconciliation and retention: the two jobs that walk the whole store rather than one result.

Both follow the orderings explained in `notifier.store` (files are the truth; a purge marks rows
before deleting files). They run one at a time (a lock of their own), skip any id whose write is
in flight in this process, and take that id's lock before changing anything about it. Their disk
work runs on the store's maintenance threads (`threads`), one step at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from loguru import logger

from ..errors import StoreError
from ..metrics import RESULTS_LOST, RESULTS_QUARANTINED
from ..records import DeliveryState
from . import files
from .delivery_mark import DeliveryMark, decode_mark
from .document import FINISHED_STATUSES, DocumentError, decode_document, record_from_document
from .locks import KeyedLocks
from .sqlite.index import ResultIndex, RowState
from .step_log import StepLog
from .threads import StoreThreads

__all__ = ["Maintenance", "ReconcileReport"]

_PENDING: Final = DeliveryState.PENDING
_PURGE_BATCH: Final = 500
_RECONCILE_PAGE: Final = 1_000
_LOG_IDS_MAX: Final = 20


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What one reconciliation found and did. All zero means the files and the index agreed."""

    reindexed: int = 0  # result files the index did not know (or knew as running/lost)
    lost: int = 0  # rows that promise a result whose file is missing or unreadable
    quarantined: int = 0  # corrupt results and partial temps moved to quarantine/
    temps_promoted: int = 0  # complete temps of a crashed write, renamed into place
    temps_removed: int = 0  # temps byte-identical to their finished result
    purges_finished: int = 0  # rows a crashed purge had marked, now gone with their files
    deliveries_restored: int = 0  # rows whose delivery state came back from a delivery mark
    marks_removed: int = 0  # delivery marks of results that are gone, and half-written marks
    steps_removed: int = 0  # step files of workflows the index has no row for
    errors: int = 0  # files that could not be examined (logged; tried again next time)

    @property
    def clean(self) -> bool:
        return not any(dataclasses.astuple(self))


class Maintenance:
    """Reconcile and purge one store. `in_flight` is the live collection of ids whose result is
    still being written by this process (the store's pending writes)."""

    def __init__(
        self,
        *,
        index: ResultIndex,
        root: Path,
        locks: KeyedLocks,
        in_flight: Collection[str],
        threads: StoreThreads,
        steps: StepLog,
    ) -> None:
        self._index = index
        self._steps = steps
        self._results_dir = root / files.RESULTS_DIR
        self._quarantine_dir = root / files.QUARANTINE_DIR
        self._locks = locks
        self._in_flight = in_flight
        self._threads = threads
        self._lock = asyncio.Lock()

    def _path(self, workflow_id: str) -> Path:
        return self._results_dir / files.result_name(workflow_id)

    async def quarantine(self, path: Path, reason: str) -> None:
        """Move a bad file to quarantine/ (never deleted), count it and say where it went."""
        target = await self._threads.maintenance(files.quarantine, path, self._quarantine_dir)
        RESULTS_QUARANTINED.inc()
        logger.error("store: quarantined {}: {} (kept as {})", path.name, reason, target)

    # -- reconciliation ------------------------------------------------------------------------

    async def reconcile(self) -> ReconcileReport:
        async with self._lock:
            counts = {field.name: 0 for field in dataclasses.fields(ReconcileReport)}
            counts["gone"] = 0  # a temp that vanished meanwhile: nothing to count
            counts["purges_finished"] = await self._finish_purges()
            try:
                listing = await self._threads.maintenance(files.list_results, self._results_dir)
            except OSError as exc:
                raise StoreError(f"cannot list {self._results_dir}: {exc.strerror}") from exc
            if listing.unknown:
                logger.warning(
                    "store: {} unexpected entr(y/ies) in {} left alone: {}",
                    len(listing.unknown),
                    self._results_dir,
                    ", ".join(sorted(listing.unknown)[:_LOG_IDS_MAX]),
                )
            results = dict(listing.results)
            for name, workflow_id in listing.temps:
                if workflow_id in self._in_flight or workflow_id in self._locks.busy():
                    continue
                async with self._locks.hold(workflow_id):
                    counts[await self._settle_temp(name, workflow_id, results)] += 1
            await self._reindex_files(results, listing.marks, counts)
            counts["lost"] += await self._mark_missing_lost(results)
            counts["marks_removed"] += await self._remove_stray_marks(listing, results)
            counts["steps_removed"] += await self._remove_stray_steps()
            del counts["gone"]
            report = ReconcileReport(**counts)
        logger.info("store: reconciled: {}", report)
        return report

    async def _finish_purges(self) -> int:
        ids = await self._index.purging()
        if not ids:
            return 0
        try:
            await self._threads.maintenance(files.remove_results, self._results_dir, ids)
            await self._steps.remove(ids)
        except OSError as exc:
            raise StoreError(f"cannot finish an interrupted purge: {exc.strerror}") from exc
        await self._index.delete(ids)
        logger.warning("store: finished an interrupted purge of {} result(s)", len(ids))
        return len(ids)

    async def _settle_temp(self, name: str, workflow_id: str, results: dict[str, int]) -> str:
        """Deal with one temp a crashed write left; returns the ReconcileReport field to count."""
        temp = self._results_dir / name
        try:
            data = await self._threads.maintenance(files.read_bytes, temp)
            try:
                await self._threads.maintenance(decode_document, data, workflow_id)
            except DocumentError as exc:
                await self.quarantine(temp, f"partial write (crash before rename): {exc}")
                return "quarantined"
            if workflow_id in results:
                try:
                    final: bytes | None = await self._threads.maintenance(
                        files.read_bytes, self._path(workflow_id)
                    )
                except FileNotFoundError:
                    final = None
                if final == data:
                    # Provably redundant: the same bytes are already the finished result.
                    await self._threads.maintenance(files.remove_file, temp)
                    logger.info("store: removed {}: identical to the finished result", name)
                    return "temps_removed"
                await self.quarantine(temp, "a different result exists for this workflow")
                return "quarantined"
            # Complete and checked, and no result exists: finish the interrupted write.
            await self._threads.maintenance(files.promote_temp, temp, self._path(workflow_id))
            results[workflow_id] = len(data)
            logger.warning(
                "store: workflow {}: recovered a complete result from a write interrupted "
                "before its rename",
                workflow_id,
            )
            return "temps_promoted"
        except FileNotFoundError:
            return "gone"
        except OSError as exc:
            logger.error("store: cannot settle {}: {}", name, exc)
            return "errors"

    async def _reindex_files(
        self, results: dict[str, int], marks: set[str], counts: dict[str, int]
    ) -> None:
        """Re-index the files the index does not show as finished (with the delivery their mark
        records), and give rows that say "pending" the delivery their mark records."""
        ids = sorted(results)
        for start in range(0, len(ids), _RECONCILE_PAGE):
            chunk = ids[start : start + _RECONCILE_PAGE]
            states = await self._index.states(chunk)
            for workflow_id in chunk:
                if workflow_id in self._in_flight:
                    continue
                state = states.get(workflow_id)
                stale = (
                    state is None
                    or state.path is None
                    or state.status not in FINISHED_STATUSES
                    or state.size_bytes != results[workflow_id]
                )
                marked = workflow_id in marks
                if not stale and not (marked and state and state.delivery_state is _PENDING):
                    continue
                async with self._locks.hold(workflow_id):
                    if stale:
                        outcome = await self._reindex_one(workflow_id, state, marked=marked)
                    else:
                        outcome = await self._restore_delivery(workflow_id)
                if outcome is not None:
                    counts[outcome] += 1

    async def _read_mark(self, workflow_id: str) -> DeliveryMark | None:
        """The result's delivery mark, or None (none, unreadable, or quarantined as corrupt)."""
        path = self._results_dir / files.mark_name(workflow_id)
        try:
            data = await self._threads.maintenance(files.read_bytes, path)
            return await self._threads.maintenance(decode_mark, data, workflow_id)
        except FileNotFoundError:
            return None
        except DocumentError as exc:
            # Delivering once more beats never: the row stays pending, the bytes are kept.
            await self.quarantine(path, str(exc))
            return None
        except OSError as exc:
            logger.error("store: cannot read {}: {}", path.name, exc)
            return None

    async def _restore_delivery(self, workflow_id: str) -> str | None:
        mark = await self._read_mark(workflow_id)
        if mark is None:
            return None
        await self._index.set_delivery(workflow_id, mark.state, mark.via, mark.at, durable=False)
        logger.info(
            "store: workflow {}: delivery state restored from its mark ({})",
            workflow_id,
            mark.state.value,
        )
        return "deliveries_restored"

    async def _reindex_one(
        self, workflow_id: str, state: RowState | None, *, marked: bool
    ) -> str | None:
        had_document = state is not None and state.status in FINISHED_STATUSES
        path = self._path(workflow_id)
        try:
            data = await self._threads.maintenance(files.read_bytes, path)
            try:
                document = await self._threads.maintenance(decode_document, data, workflow_id)
            except DocumentError as exc:
                await self.quarantine(path, str(exc))
                if had_document:
                    # The row promised a result this file no longer holds; the bytes are kept in
                    # quarantine/ for an operator, the row says lost.
                    lost = await self._index.mark_lost([workflow_id], f"result corrupt: {exc}")
                    RESULTS_LOST.inc(lost)
                return "quarantined"
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.error("store: cannot re-index {}: {}", path.name, exc)
            return "errors"
        record = record_from_document(document)
        record.path = files.relative_path(workflow_id)
        record.size_bytes = len(data)
        mark = await self._read_mark(workflow_id) if marked else None
        if mark is not None and state is None:  # a new row: it takes the mark's delivery
            record.delivery_state, record.delivered_via = mark.state, mark.via
            record.delivered_at = mark.at
        await self._index.upsert_finished(record)
        if mark is not None and state is not None and state.delivery_state is _PENDING:
            await self._index.set_delivery(
                workflow_id, mark.state, mark.via, mark.at, durable=False
            )
        logger.info(
            "store: workflow {}: re-indexed from its result file{}",
            workflow_id,
            f" (delivery: {mark.state.value}, from its mark)" if mark is not None else "",
        )
        return "reindexed"

    async def _remove_stray_steps(self) -> int:
        """Remove the step files of workflows the index holds no row for: purged ones whose
        file a crash left, and running ones an index rebuilt from the result files no longer
        knows (nothing can resume those: the row was their only record). Steps never outlive
        their workflow."""
        try:
            ids = await self._steps.workflow_ids()
            known = await self._index.states(ids)
            stray = [
                workflow_id
                for workflow_id in ids
                if workflow_id not in known
                and workflow_id not in self._in_flight
                and workflow_id not in self._locks.busy()
            ]
            if stray:
                await self._steps.remove(stray)
        except OSError as exc:
            logger.error("store: cannot remove stray step files: {}", exc.strerror)
            return 0
        if stray:
            logger.warning(
                "store: removed the step files of {} workflow(s) the index does not hold: {}",
                len(stray),
                ", ".join(sorted(stray)[:_LOG_IDS_MAX]),
            )
        return len(stray)

    async def _remove_stray_marks(self, listing: files.Listing, results: dict[str, int]) -> int:
        """Delivery marks whose result is gone (its purge or its loss came after the mark), and
        marks a crash left half-written (their delivery was not recorded: it will be again)."""
        stray = [
            (files.mark_name(w), w) for w in sorted(listing.marks) if w not in results
        ] + listing.mark_temps
        removed = 0
        for name, workflow_id in stray:
            if workflow_id in self._in_flight or workflow_id in self._locks.busy():
                continue  # this process is writing its result, or its mark, right now
            async with self._locks.hold(workflow_id):
                try:
                    if name == files.mark_name(workflow_id) and not await self._threads.maintenance(
                        files.missing, [self._path(workflow_id)]
                    ):
                        continue  # its result was written since the listing
                    await self._threads.maintenance(files.remove_file, self._results_dir / name)
                except OSError as exc:
                    logger.error("store: cannot remove {}: {}", name, exc)
                    continue
            removed += 1
        if removed:
            logger.info("store: removed {} stray delivery mark(s)", removed)
        return removed

    async def _mark_missing_lost(self, results: dict[str, int]) -> int:
        missing: list[str] = []
        after = ""
        while page := await self._index.ids_with_documents(after, _RECONCILE_PAGE):
            after = page[-1]
            missing.extend(w for w in page if w not in results and w not in self._in_flight)
        if not missing:
            return 0
        # Files may have appeared since the listing (a finish in this process): look again.
        paths = {self._path(w): w for w in missing}
        absent = await self._threads.maintenance(files.missing, list(paths))
        gone = [paths[p] for p in absent if paths[p] not in self._in_flight]
        lost = await self._index.mark_lost(gone, "result file missing at reconciliation")
        if lost:
            RESULTS_LOST.inc(lost)
            logger.error(
                "store: {} result(s) lost (indexed, but no file): {}{}",
                lost,
                ", ".join(gone[:_LOG_IDS_MAX]),
                " ..." if len(gone) > _LOG_IDS_MAX else "",
            )
        return lost

    # -- retention -----------------------------------------------------------------------------

    async def purge(
        self, cutoff: float, *, now: float, include_undelivered: bool, dry_run: bool
    ) -> int:
        """Mark, delete files, delete rows, in batches; see `ResultStore.purge`."""
        async with self._lock:
            exclude = sorted(set(self._in_flight) | self._locks.busy())
            if dry_run:
                return await self._index.count_expired(
                    cutoff, include_undelivered=include_undelivered, exclude=exclude
                )
            purged = 0
            while ids := await self._index.expired(
                cutoff, include_undelivered=include_undelivered, exclude=exclude, limit=_PURGE_BATCH
            ):
                await self._purge_batch(ids, now)
                purged += len(ids)
            kept = 0
            if not include_undelivered:
                kept = await self._index.count_expired(
                    cutoff, include_undelivered=True, exclude=exclude
                )
        if kept:
            logger.warning(
                "store: retention kept {} expired result(s) that were never delivered", kept
            )
        if purged:
            logger.info("store: retention purged {} result(s) finished before {}", purged, cutoff)
        return purged

    async def _purge_batch(self, workflow_ids: Sequence[str], now: float) -> None:
        await self._index.mark_purging(workflow_ids, now)
        try:
            await self._threads.maintenance(
                files.remove_results, self._results_dir, list(workflow_ids)
            )
            await self._steps.remove(list(workflow_ids))
        except OSError as exc:
            # The rows stay marked (and hidden); reconciliation finishes them at the next start.
            raise StoreError(f"purge: cannot delete result files: {exc.strerror}") from exc
        await self._index.delete(workflow_ids)
