"""The offload protocol: hours of one table from ClickHouse into Iceberg, exactly once.

Two stores hold an offload's outcome: the Iceberg table (data) and Dagster's event log (each
hour's materialization, for people and the UI). Iceberg commits are atomic and come first, so
every commit carries its own bookkeeping in the snapshot summary (offload/bookkeeping.py: a
map of every hour it wrote to its watermark, fingerprint and rows, and the run id), and every
offload starts from what the table committed (plan.reconcile), never from Dagster's record: a
crash after the commit and before Dagster recorded it never leads to a second copy, and the
cost of reconciling does not grow with the asset's history. Only the ancestry of the current
snapshot counts: after a rollback, the bookkeeping of the snapshots it removed no longer
describes the table.

A run covering many hours (a backfill, the schedule's tick) commits each table once per
checkpoint of at most `checkpoint_hours` offload ranges, not once per hour: a commit's cost
(pyiceberg's metadata handling grows with the snapshot count) is paid once per checkpoint,
the table's history grows by one snapshot per checkpoint, and a crash redoes at most one
checkpoint. Within a checkpoint the warm tier is read with a few queries (one grouped count
sizes the slices, adjacent hours with the same bounds are read together, ordered by hour)
and each hour gets its own data files, so that a later repair of one hour replaces whole
files. The daily bars' day is one range, written once per run.

- Append layers (raw, bronze) load rows ingested after the watermark, up to the warm clock
  minus a settle lag (inserts still in flight are not skipped). They re-read an overlap
  before the watermark and replace it in the same commit, so a row that became visible late
  (a long insert through the view chain, a replica behind) is still offloaded once.
- Replace layers (silver, gold) replace the hour with an overwrite filtered on it, unless
  the hour's fingerprint is unchanged (one grouped query fingerprints the checkpoint). The
  fingerprint recorded is summed from per-row hashes that travel with the rows written, so
  it describes exactly those rows, however the warm hour moves during the read.
- Warm is the source of new rows, not the judge of old ones: an hour whose commit would
  leave it with fewer cold rows than it holds is refused (unless `allow_fewer_rows`) and
  left out of the commit, and an hour older than the warm retention is cold-only, never
  read from warm again; nor is an hour a reprocess replaced while warm holds it
  (offload/reprocessed.py).

Every commit is one snapshot: what the checkpoint owns goes (a delete filter, where cold holds
any of it; a file it matches in part is written again without those rows) and the new files
come in. Every snapshot asserts the branch's snapshot it was planned on, and pyiceberg's own
retries (a rebase onto whatever committed meanwhile) are off: of two concurrent writers of a
table, the second fails instead of committing a second copy, starts the checkpoint over from
reconciliation and finds done what the other wrote. Files are deleted only after a definite
failure (before the catalog call, or the catalog refusing it); when the outcome of the
catalog call is unknown they stay, and the next run reconciles from the table.

This module is the orchestrator. Each range of a checkpoint goes through explicit phases
(offload/phases.py): planned (plan.py), read into data files (stream.py, the cold schema
following warm's in schema.py), decided and committed (commit.py).
"""

import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from clickhouse_connect.driver.client import Client
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.table import Table

from cold_assets.cold.holdings import ColdFiles
from cold_assets.cold.ranges import range_filter
from cold_assets.hours import HourPolicy, HourStatus
from cold_assets.offload import commit, plan, stream
from cold_assets.offload.bookkeeping import (
    Ancestry,
    OffloadSource,
    PartitionState,
    StateSource,
    commit_summary,
    snapshot_id,
)
from cold_assets.offload.phases import ColdMatch, ColdRowsWouldBeLost, Decided, Outcome, RunOptions, Settled, ToRead, Written
from cold_assets.offload.reprocessed import Mark, MarkChanges, mark_changes, reprocessed_marks
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.tables import MirroredTable
from cold_assets.warm.read import read_columns, warm_now

# A conflict (another writer of the table committed first) redoes the checkpoint; the wait
# grows, with jitter, so that two runs committing alike do not keep colliding.
MAX_CONFLICT_RETRIES = 8
CONFLICT_WAIT_SECONDS = 0.2
# Offload ranges (hours) per commit: a crash redoes at most this many hours of one table, and
# a commit's fixed cost (pyiceberg's metadata handling grows with the snapshot count) is paid
# once per this many hours. COLD_CHECKPOINT_HOURS overrides it (settings.py).
DEFAULT_CHECKPOINT_HOURS = 24


@dataclass(frozen=True)
class OffloadResult:
    partition_key: str
    mode: Outcome
    watermark: datetime | None
    fingerprint: str | None
    rows_written: int
    snapshot_id: int | None
    files: int
    bytes_written: int  # the data files' sizes: what this hour added to cold storage
    seconds: float
    reconciled_from: StateSource  # where the starting state came from
    status: HourStatus = HourStatus.CLOSED
    # The catalog commit of its checkpoint, timed alone (None: this hour committed nothing).
    commit_seconds: float | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.seconds if self.seconds > 0 else 0.0

    def state(self) -> PartitionState:
        """The state this offload leaves its hour in (what its checks compare against)."""
        return PartitionState(self.watermark, self.fingerprint, self.snapshot_id, source=StateSource.SNAPSHOT)


@dataclass(frozen=True)
class Checkpoint:
    """What one commit (or none) of a ranged offload did: per partition key its result, and
    the hours refused because they would lose cold rows (nothing of them was written)."""

    results: list[OffloadResult]
    refused: list[ColdRowsWouldBeLost]
    snapshot_id: int | None
    seconds: float
    commit_seconds: float | None = None  # the catalog commit alone (None: nothing committed)


def offload_partitions(
    client: Client,
    table: Table,
    spec: MirroredTable,
    partition_keys: list[str],
    run_id: str,
    settle_lag: timedelta = timedelta(seconds=30),
    replace_hour: bool = False,
    *,
    overlap: timedelta = timedelta(minutes=5),
    allow_fewer_rows: bool = False,
    warm_retention: timedelta = timedelta(days=30),
    now: datetime | None = None,
    checkpoint_hours: int = DEFAULT_CHECKPOINT_HOURS,
    source: OffloadSource = OffloadSource.WARM,
    marked: Mapping[datetime, Mark] | None = None,
) -> Iterator[Checkpoint]:
    """Offloads hourly partitions of one table, one commit per checkpoint of at most
    `checkpoint_hours` offload ranges (see the module docstring for the protocol), yielding
    each checkpoint once committed: a crash redoes at most one checkpoint, and a long backfill
    becomes visible progressively.

    `replace_hour` forces an append
    layer's hours to be replaced wholesale (a repair), still only up to the settle lag.
    `allow_fewer_rows` lets a replace delete cold rows warm no longer has (an operator
    correcting history). `source` is recorded in each commit's summary: `client` is the warm
    tier, or a reprocess's scratch medallion; `marked` the reprocess's ranges (their starts) to
    mark reprocessed, with their marks (offload/reprocessed.py). `now` is the warm clock the run decides by (default: read now); one
    reading per run keeps its offloads and checks consistent.

    `table` is the cold table as the caller just loaded it: the first checkpoint plans from it,
    each later one and each retry after a conflict refreshes it first. Each commit leaves it
    as committed (its metadata and metadata file), as pyiceberg's own commits do."""
    if settle_lag < timedelta(0) or overlap < timedelta(0):
        raise ValueError(f"settle lag ({settle_lag}) and append overlap ({overlap}) must not be negative")
    if checkpoint_hours < 1:
        raise ValueError(f"checkpoint_hours must be at least 1, got {checkpoint_hours}")
    now = now or warm_now(client)
    policy = HourPolicy(settle_lag=settle_lag, warm_retention=warm_retention)
    by_range: dict[datetime, list[str]] = {}
    for key in sorted(set(partition_keys)):
        by_range.setdefault(spec.offload_range(hour_of(key))[0], []).append(key)
    starts = sorted(by_range)
    if marked and source is not OffloadSource.REPROCESS:
        raise ValueError("only a reprocess marks ranges reprocessed")
    options = RunOptions(run_id, settle_lag, replace_hour, overlap, allow_fewer_rows, now, policy, source, dict(marked or {}))
    span = (starts[0], spec.offload_range(starts[-1])[1]) if starts else None
    cold_files: ColdFiles | None = None
    for i in range(0, len(starts), checkpoint_hours):
        chunk = [(start, by_range[start]) for start in starts[i : i + checkpoint_hours]]
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            try:
                if i or attempt:
                    # The first plan starts from the table as the caller just loaded it (one
                    # parse of its metadata less a run). A writer's snapshot since fails the
                    # commit's check of the branch, and the retry starts from here; a change of
                    # properties alone (a reprocess's marks) is not checked, as it was not
                    # between a refresh here and the commit.
                    table = table.refresh()
                if cold_files is None or cold_files.valid_at != snapshot_id(table):
                    cold_files = ColdFiles(table, spec, *span)  # type: ignore[misc]
                checkpoint = _checkpoint(client, table, spec, chunk, options, cold_files)
                if checkpoint.snapshot_id is not None:
                    cold_files.valid_at = checkpoint.snapshot_id
                break
            except (ValidationException, CommitFailedException):
                # A concurrent writer of the table committed first; start the checkpoint over
                # from reconciliation, which now sees its commit.
                if attempt == MAX_CONFLICT_RETRIES:
                    raise
                time.sleep(CONFLICT_WAIT_SECONDS * (attempt + 1) * random.uniform(0.5, 1.5))
        yield checkpoint


def offload_partition(
    client: Client,
    table: Table,
    spec: MirroredTable,
    hour: datetime,
    partition_key: str,
    run_id: str,
    settle_lag: timedelta = timedelta(seconds=30),
    replace_hour: bool = False,
    *,
    overlap: timedelta = timedelta(minutes=5),
    allow_fewer_rows: bool = False,
    warm_retention: timedelta = timedelta(days=30),
    now: datetime | None = None,
) -> OffloadResult:
    """Offloads one hourly partition (`offload_partitions` of one key); raises
    ColdRowsWouldBeLost when the offload was refused."""
    if hour_of(partition_key) != hour:
        raise ValueError(f"partition key {partition_key} is not the hour {hour.isoformat()}")
    (checkpoint,) = offload_partitions(
        client, table, spec, [partition_key], run_id, settle_lag, replace_hour,
        overlap=overlap, allow_fewer_rows=allow_fewer_rows, warm_retention=warm_retention, now=now,
    )
    if checkpoint.refused:
        raise checkpoint.refused[0]
    return checkpoint.results[0]


def _checkpoint(
    client: Client,
    table: Table,
    spec: MirroredTable,
    chunk: list[tuple[datetime, list[str]]],
    options: RunOptions,
    cold_files: ColdFiles,
) -> Checkpoint:
    """One checkpoint, phase by phase (offload/phases.py): plan every range, read those that
    need it into data files, decide each, commit what changed in one snapshot."""
    started = time.perf_counter()
    columns = read_columns(client, spec, table.schema())
    ancestry = Ancestry(table, spec)
    marks = reprocessed_marks(table)
    planned = [plan.plan_range(spec, start, keys, ancestry, cold_files, options, marks) for start, keys in chunk]
    planned = plan.skip_unchanged_replaces(client, table, spec, columns, planned, options)
    to_read = [p for p in planned if isinstance(p, ToRead)]
    written: list[Written] = []
    decided: dict[datetime, Decided] = {}
    refused: list[ColdRowsWouldBeLost] = []
    snapshot = None
    committing = False
    commit_seconds: float | None = None
    try:
        if to_read:
            table, written = stream.read_into_files(client, table, spec, columns, to_read)
        # Every range is matched and decided on the snapshot the commit will assert, its files
        # planned once for the checkpoint's span (every range's delete filter lies within it).
        checkpoint_span = range_filter(spec.time_column, chunk[0][0], spec.offload_range(chunk[-1][0])[1])
        matcher = commit.ColdMatcher(table, checkpoint_span)
        for w in written:
            span = w.planned.span
            holds = cold_files.holds(span.start, span.end)
            matched = matcher.match(w.planned.read.delete_filter) if holds else ColdMatch()
            verdict = commit.decide(spec, w, matched, options.allow_fewer_rows)
            if isinstance(verdict, ColdRowsWouldBeLost):
                refused.append(verdict)
            else:
                decided[span.start] = verdict
            if isinstance(verdict, ColdRowsWouldBeLost) or not verdict.commits:
                commit.discard(table, [w])
        to_commit = [d for d in decided.values() if d.commits]
        if to_commit:
            summary = commit_summary(
                options.run_id,
                {
                    partition_key_of(d.written.planned.span.start): d.new_state.entry(d.outcome.value, d.written.warm.rows)
                    for d in to_commit
                },
                options.source,
            )
            # Only what matched cold rows is deleted: a first backfill commits appends only.
            # Concurrent writers still cannot both commit: every snapshot asserts the branch's
            # current snapshot, and retries are off (commit.py).
            committing = True
            commit_started = time.perf_counter()
            snapshot = commit.commit_transaction(
                matcher,
                [f for d in to_commit for f in d.written.data_files],
                [d.matched for d in to_commit],
                summary,
                split_column=spec.split_column,
                properties=_marks_changed(marks, to_commit, options),
            )
            commit_seconds = time.perf_counter() - commit_started
    except BaseException:
        # Until the commit, the files are certainly unreferenced; from then on the commit owns
        # them (commit.py): it deletes them where the catalog refused or was never called, and
        # keeps them where the call's outcome is unknown (a lost connection after COMMIT, a 5xx
        # after the REST catalog committed, a run terminated mid-call): the next run reconciles
        # from the table, and if the commit did not land they are orphans for the maintenance.
        if not committing:
            commit.discard(table, written)
        raise
    seconds = time.perf_counter() - started
    current = snapshot_id(table) if snapshot is None else None
    # Each partition key's share of the checkpoint (the daily bars' day serves 24 keys).
    share = seconds / sum(len(p.span.keys) for p in planned)
    results = []
    for p in planned:
        if isinstance(p, Settled):
            # Decided without a read: it stays where it was.
            outcome, state, rows, files, size, ids = p.outcome, p.state, 0, 0, 0, p.state.snapshot_id or current
            committed = None
        elif p.span.start in decided:
            # Read: left at its new state. An append's watermark moves in its result (its checks
            # and Dagster's record) even when nothing was new; only a commit moves the table's.
            d = decided[p.span.start]
            outcome, state = d.outcome, d.new_state
            added = d.written.data_files if d.commits else ()
            rows, files, size = (d.written.warm.rows if d.commits else 0), len(added), sum(f.file_size_in_bytes for f in added)
            ids = snapshot if d.commits else state.snapshot_id or current
            committed = commit_seconds if d.commits else None
        else:
            continue  # refused
        for key in p.span.keys:
            results.append(
                OffloadResult(
                    partition_key=key, mode=outcome, watermark=state.watermark, fingerprint=state.fingerprint,
                    rows_written=rows, snapshot_id=ids, files=files, bytes_written=size, seconds=share,
                    reconciled_from=p.state.source, status=p.span.status, commit_seconds=committed,
                )
            )
    return Checkpoint(results, refused, snapshot, seconds, commit_seconds)


def _marks_changed(marks: dict[str, Mark], to_commit: list[Decided], options: RunOptions) -> MarkChanges | None:
    """The reprocessed marks this commit changes (None: none): a reprocess marks the ranges it
    was asked to and clears the others it writes; an offload from warm forgets the marks of
    ranges past the warm retention (offload/reprocessed.py)."""
    reprocess = options.source is OffloadSource.REPROCESS
    if not marks and not (reprocess and options.marked):
        return None
    written = {
        partition_key_of(d.written.planned.span.start): options.marked.get(d.written.planned.span.start) if reprocess else None
        for d in to_commit
    }
    changes = mark_changes(marks, written, None if reprocess else options.policy.warm_horizon(options.now))
    return changes or None
