"""Planning a checkpoint: where each range starts from, and what it reads and deletes.

The starting state is reconciled from the table alone (`reconcile`): the bookkeeping of its
current snapshot's ancestry, and the cold files' statistics under it. Dagster's event log is
not read: see `reconcile`. A range is then `Settled` without a read (cold-only, an append
layer with nothing settled since its watermark, a replace layer whose warm fingerprint is
the one last written, an hour a reprocess replaced while warm holds it) or `ToRead`.
"""

from collections.abc import Mapping
from datetime import datetime

from clickhouse_connect.driver.client import Client
from pyiceberg.expressions import And, GreaterThan
from pyiceberg.table import Table

from cold_assets.cold.holdings import ColdFiles
from cold_assets.cold.ranges import range_filter
from cold_assets.hours import HourStatus
from cold_assets.offload.bookkeeping import Ancestry, OffloadSource, PartitionState, StateSource
from cold_assets.offload.phases import Outcome, ReadPlan, RunOptions, Settled, Span, ToRead
from cold_assets.offload.reprocessed import Mark
from cold_assets.parity.checksums import warm_fingerprints
from cold_assets.partitions import partition_key_of
from cold_assets.tables import MirroredTable, OffloadMode
from cold_assets.warm.read import EPOCH, FAR_FUTURE, WarmColumn, warm_read_query


def reconcile(committed: PartitionState | None, data_floor: datetime | None = None) -> PartitionState:
    """The state an offload starts from: the range's newest commit on the current ancestry,
    and the cold files' own floor (the newest ingestion they hold) where that is later or the
    commit is gone (expired).

    Dagster's record of the range is not read, for three reasons. Where the ancestry holds the
    range's commit, the commit is what the table holds. A record can be newer in two ways: a
    run that found nothing new recorded a later watermark without a commit (starting from the
    commit instead re-reads what came after it, which is harmless), and a repair that moved a
    watermark back, committed and then killed before Dagster heard of it, left a record newer
    than the truth (starting from it would lose the rows the repair deferred). Where the
    ancestry does not (the nightly expiry removed the commit), a record cannot be trusted
    either: its snapshot may have been rolled back before it expired, and the two cannot be
    told apart. And its read grows with the asset's history, nine materializations an hour
    for years."""
    known = [committed] if committed is not None else []
    if data_floor is not None:
        known.append(PartitionState(watermark=data_floor, source=StateSource.DATA))
    if not known:
        return PartitionState()
    return max(known, key=lambda s: (s.watermark or EPOCH, s.source is StateSource.SNAPSHOT))


def plan_range(
    spec: MirroredTable, start: datetime, keys: list[str], ancestry: Ancestry, cold_files: ColdFiles, options: RunOptions,
    reprocessed: Mapping[str, Mark],
) -> Settled | ToRead:
    """Where one range starts from, and the read and delete it needs (if any). `reprocessed`:
    the table's reprocessed ranges (offload/reprocessed.py)."""
    span = Span(tuple(keys), start, spec.offload_range(start)[1], options.policy.status(spec, start, options.now))
    committed = ancestry.state(start)
    reprocessed_here = partition_key_of(start) in reprocessed
    if reprocessed_here and span.status is not HourStatus.COLD_ONLY and options.source is OffloadSource.WARM:
        # A reprocess replaced it, and warm still holds the earlier logic's rows: cold is kept
        # (a backfill or a repair from warm would undo the reprocess).
        return Settled(span, committed or PartitionState(), Outcome.REPROCESSED)
    if span.status is HourStatus.COLD_ONLY:
        if committed is not None or cold_files.holds(start, span.end):
            # ClickHouse's TTL may have dropped some of its rows: cold is the copy of record.
            return Settled(span, committed or PartitionState(), Outcome.COLD_ONLY)
        # Never offloaded and past the retention (a first backfill that reached it late, an
        # outage): the TTL deletes at merges, so what warm still holds may be the only copy
        # left. It is offloaded as any range; cold holds nothing it could replace.
    mode = OffloadMode.REPLACE if options.replace_hour else spec.mode
    floor = cold_files.newest_ingestion(start, span.end) if mode is OffloadMode.APPEND else None
    state = reconcile(committed, floor)
    until = options.now - options.settle_lag
    whole_range = range_filter(spec.time_column, start, span.end)
    if mode is OffloadMode.APPEND:
        watermark = state.watermark or EPOCH
        if until <= watermark:
            return Settled(span, state, Outcome.UNCHANGED)
        # Re-read an overlap before the watermark: rows that became visible after it passed them.
        after = max(watermark - options.overlap, EPOCH) if watermark > EPOCH else EPOCH
        newer = GreaterThan("ingested_at", after.isoformat())  # type: ignore[call-arg, arg-type]  # pyiceberg's pydantic signature
        read = ReadPlan(
            after=after, until=until, row_hash=False, newer_than=watermark, delete_filter=And(whole_range, newer),
            new_state=PartitionState(watermark=until, run_id=options.run_id, snapshot_id=state.snapshot_id),
        )
        return ToRead(span, state, read)
    # Replace layers read the whole range, up to the settle lag too when an append layer is
    # repaired (rows younger than it stay for the next append). An append layer's watermark
    # is where its read stopped; a replace layer's records when.
    repair_of_append = spec.mode is OffloadMode.APPEND
    read = ReadPlan(
        after=EPOCH, until=until if repair_of_append else FAR_FUTURE, row_hash=not repair_of_append, newer_than=None,
        delete_filter=whole_range,
        new_state=PartitionState(watermark=until if repair_of_append else options.now, run_id=options.run_id),
    )
    return ToRead(span, state, read)


def skip_unchanged_replaces(
    client: Client,
    table: Table,
    spec: MirroredTable,
    columns: list[WarmColumn] | None,
    planned: list[Settled | ToRead],
    options: RunOptions,
) -> list[Settled | ToRead]:
    """A replace layer's range whose warm fingerprint equals the one last written needs no
    read: one grouped query fingerprints every range of the checkpoint."""
    if options.replace_hour or spec.mode is not OffloadMode.REPLACE:
        return planned
    # A range without a recorded fingerprint (never offloaded: a first backfill) is read anyway.
    candidates = [p for p in planned if isinstance(p, ToRead) and p.state.fingerprint is not None]
    if not candidates:
        return planned
    query = warm_read_query(client, spec, columns, candidates[0].span.start, candidates[-1].span.end)
    digests = warm_fingerprints(client, table, spec, query, columns)

    candidate_ids = {id(p) for p in candidates}

    def unchanged(p: Settled | ToRead) -> bool:
        return id(p) in candidate_ids and digests.get(int(p.span.start.timestamp()), "0:0") == p.state.fingerprint

    return [Settled(p.span, p.state, Outcome.UNCHANGED) if unchanged(p) else p for p in planned]

