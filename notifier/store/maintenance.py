"""Reconciliation and retention: the two jobs that walk the whole store rather than one result.

Both follow the orderings explained in `notifier.store` (files are the truth; a purge marks rows
before deleting files). They run one at a time (a lock of their own), skip any id whose write is
in flight in this process, and take that id's lock before changing anything about it.
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
from . import files
from .document import FINISHED_STATUSES, DocumentError, decode_document, record_from_document
from .locks import KeyedLocks
from .sqlite.index import ResultIndex

__all__ = ["Maintenance", "ReconcileReport"]

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
    ) -> None:
        self._index = index
        self._results_dir = root / files.RESULTS_DIR
        self._quarantine_dir = root / files.QUARANTINE_DIR
        self._locks = locks
        self._in_flight = in_flight
        self._lock = asyncio.Lock()

    def _path(self, workflow_id: str) -> Path:
        return self._results_dir / files.result_name(workflow_id)

    async def quarantine(self, path: Path, reason: str) -> None:
        """Move a bad file to quarantine/ (never deleted), count it and say where it went."""
        target = await files.quarantine(path, self._quarantine_dir)
        RESULTS_QUARANTINED.inc()
        logger.error("store: quarantined {}: {} (kept as {})", path.name, reason, target)

    # -- reconciliation ------------------------------------------------------------------------

    async def reconcile(self) -> ReconcileReport:
        async with self._lock:
            counts = {field.name: 0 for field in dataclasses.fields(ReconcileReport)}
            counts["gone"] = 0  # a temp that vanished meanwhile: nothing to count
            counts["purges_finished"] = await self._finish_purges()
            try:
                listing = await files.list_results(self._results_dir)
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
            await self._reindex_files(results, counts)
            counts["lost"] += await self._mark_missing_lost(results)
            del counts["gone"]
            report = ReconcileReport(**counts)
        logger.info("store: reconciled: {}", report)
        return report

    async def _finish_purges(self) -> int:
        ids = await self._index.purging()
        if not ids:
            return 0
        try:
            await files.remove_results(self._results_dir, ids)
        except OSError as exc:
            raise StoreError(f"cannot finish an interrupted purge: {exc.strerror}") from exc
        await self._index.delete(ids)
        logger.warning("store: finished an interrupted purge of {} result(s)", len(ids))
        return len(ids)

    async def _settle_temp(self, name: str, workflow_id: str, results: dict[str, int]) -> str:
        """Deal with one temp a crashed write left; returns the ReconcileReport field to count."""
        temp = self._results_dir / name
        try:
            data = await files.read_bytes(temp)
            try:
                await asyncio.to_thread(decode_document, data, workflow_id)
            except DocumentError as exc:
                await self.quarantine(temp, f"partial write (crash before rename): {exc}")
                return "quarantined"
            if workflow_id in results:
                try:
                    final: bytes | None = await files.read_bytes(self._path(workflow_id))
                except FileNotFoundError:
                    final = None
                if final == data:
                    # Provably redundant: the same bytes are already the finished result.
                    await files.remove_file(temp)
                    logger.info("store: removed {}: identical to the finished result", name)
                    return "temps_removed"
                await self.quarantine(temp, "a different result exists for this workflow")
                return "quarantined"
            # Complete and checked, and no result exists: finish the interrupted write.
            await files.promote_temp(temp, self._path(workflow_id))
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

    async def _reindex_files(self, results: dict[str, int], counts: dict[str, int]) -> None:
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
                if not stale:
                    continue
                had_document = state is not None and state.status in FINISHED_STATUSES
                async with self._locks.hold(workflow_id):
                    outcome = await self._reindex_one(workflow_id, had_document=had_document)
                if outcome is not None:
                    counts[outcome] += 1

    async def _reindex_one(self, workflow_id: str, *, had_document: bool) -> str | None:
        path = self._path(workflow_id)
        try:
            data = await files.read_bytes(path)
            try:
                document = await asyncio.to_thread(decode_document, data, workflow_id)
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
        await self._index.upsert_finished(record)
        logger.info("store: workflow {}: re-indexed from its result file", workflow_id)
        return "reindexed"

    async def _mark_missing_lost(self, results: dict[str, int]) -> int:
        missing: list[str] = []
        after = ""
        while page := await self._index.ids_with_documents(after, _RECONCILE_PAGE):
            after = page[-1]
            missing.extend(w for w in page if w not in results and w not in self._in_flight)
        if not missing:
            return 0
        # Files may have appeared since the listing (a finish in this process): look again.
        paths = {w: self._path(w) for w in missing}
        gone = await asyncio.to_thread(lambda: [w for w, p in paths.items() if not p.exists()])
        gone = [w for w in gone if w not in self._in_flight]
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
            await files.remove_results(self._results_dir, list(workflow_ids))
        except OSError as exc:
            # The rows stay marked (and hidden); reconciliation finishes them at the next start.
            raise StoreError(f"purge: cannot delete result files: {exc.strerror}") from exc
        await self._index.delete(workflow_ids)
