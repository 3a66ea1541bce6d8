"""The offload's bookkeeping in Iceberg snapshot summaries, and reading it back.

A commit covers every hour a checkpoint of a run offloaded (one commit per table per
checkpoint, not per hour), and its snapshot summary carries the bookkeeping of each of them,
the way Iceberg's Kafka Connect sink keeps its map of offsets: `cold-assets.run-id`, and
`cold-assets.partitions`, a JSON object keyed by the partition key of each offload range's
start (the hour; the day's first hour for the daily bars) giving mode, rows, watermark and
fingerprint. That makes the table its own record: a crash between the Iceberg commit and
Dagster's event loses nothing. Commits written before the map (one hour per snapshot, keys
`cold-assets.partition`, `.mode`, `.rows`, `.watermark`, `.fingerprint`) read the same way.

Only the ancestry of the current snapshot is the table's history; a snapshot that a rollback
left behind still sits in the metadata, but its bookkeeping is not the table's. `Ancestry`
walks it once and answers for every hour of a checkpoint.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import lru_cache
from types import MappingProxyType

from pyiceberg.table import Table
from pyiceberg.table.snapshots import Operation, Snapshot, ancestors_of

from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.tables import MirroredTable

SUMMARY = "cold-assets."  # prefix of our snapshot summary properties
PARTITIONS = f"{SUMMARY}partitions"  # the per-range map
RUN_ID = f"{SUMMARY}run-id"
SOURCE = f"{SUMMARY}source"  # where a commit's rows came from (OffloadSource); absent: warm


class OffloadSource(str, Enum):
    """Where an offload's rows come from."""

    WARM = "warm"  # the warm tier (every offload, repair and backfill)
    REPROCESS = "reprocess"  # a scratch medallion recomputed from cold raw (recovery/reprocess.py)
_LEGACY_PARTITION = f"{SUMMARY}partition"  # one range per snapshot, before the map


class StateSource(str, Enum):
    """Where the state an offload started from came from."""

    NONE = "none"
    SNAPSHOT = "snapshot"
    DATA = "data"  # the cold files' own statistics


@dataclass(frozen=True)
class PartitionState:
    """What is known about one offloaded (table, hour): from a snapshot's bookkeeping, or the
    cold files' statistics."""

    watermark: datetime | None = None  # append: rows ingested up to here are in cold
    fingerprint: str | None = None  # replace: "rows:checksum" of the rows last written
    snapshot_id: int | None = None
    run_id: str | None = None
    source: StateSource = StateSource.NONE

    def entry(self, mode: str, rows: int) -> dict:
        """This state as one entry of a snapshot's `cold-assets.partitions` map."""
        entry: dict = {"mode": mode, "rows": rows}
        if self.watermark is not None:
            entry["watermark"] = self.watermark.isoformat()
        if self.fingerprint is not None:
            entry["fingerprint"] = self.fingerprint
        return entry


def commit_summary(run_id: str, entries: Mapping[str, dict], source: OffloadSource = OffloadSource.WARM) -> dict[str, str]:
    """The snapshot summary of one offload commit: `entries` maps each offload range's start
    (its partition key) to `PartitionState.entry`."""
    summary = {RUN_ID: run_id, PARTITIONS: json.dumps(dict(sorted(entries.items())), separators=(",", ":"))}
    return summary if source is OffloadSource.WARM else summary | {SOURCE: source.value}


@lru_cache(maxsize=4096)
def _parsed(partitions: str) -> Mapping[str, dict]:
    # A snapshot's summary never changes, and every tick walks the same ancestry about 20
    # times (each asset, each check): its maps are parsed once. Read only.
    return MappingProxyType(json.loads(partitions))


def _entries(snapshot: Snapshot) -> Mapping[str, dict]:
    props = snapshot.summary.additional_properties if snapshot.summary else {}
    if PARTITIONS in props:
        return _parsed(props[PARTITIONS])
    key = props.get(_LEGACY_PARTITION)
    if not key:
        return {}
    entry = {name: props[f"{SUMMARY}{name}"] for name in ("watermark", "fingerprint") if f"{SUMMARY}{name}" in props}
    return {key: entry}


def _state(snapshot: Snapshot, entry: dict) -> PartitionState:
    props = snapshot.summary.additional_properties if snapshot.summary else {}
    return PartitionState(
        watermark=datetime.fromisoformat(entry["watermark"]) if entry.get("watermark") else None,
        fingerprint=entry.get("fingerprint"),
        snapshot_id=snapshot.snapshot_id,
        run_id=props.get(RUN_ID) or None,
        source=StateSource.SNAPSHOT,
    )


class Ancestry:
    """The current snapshot's ancestry, walked newest first only as far as asked: the newest
    bookkeeping per offload range. A tick asks for the hours it offloads, which the newest
    snapshots hold; a range never committed walks it all (the thinning keeps that to about a
    day of commits)."""

    def __init__(self, table: Table, spec: MirroredTable):
        self._spec = spec
        self._snapshots = iter(ancestors_of(table.current_snapshot(), table.metadata))
        self._states: dict[datetime, PartitionState] = {}  # offload range start -> newest state
        self._seen: set[str] = set()  # keys answered by a newer snapshot
        self._walked = False

    def _step(self) -> None:
        snapshot = next(self._snapshots, None)
        if snapshot is None:
            self._walked = True
            return
        for key, entry in _entries(snapshot).items():
            if key not in self._seen:
                self._seen.add(key)
                self._states.setdefault(self._spec.offload_range(hour_of(key))[0], _state(snapshot, entry))

    def state(self, range_start: datetime) -> PartitionState | None:
        while range_start not in self._states and not self._walked:
            self._step()
        return self._states.get(range_start)

    @property
    def states(self) -> dict[datetime, PartitionState]:
        """Every range's (the whole walk). Expired snapshots are gone, and so is their
        bookkeeping; the cold files' statistics are the floor under that."""
        while not self._walked:
            self._step()
        return self._states


def is_data_rewrite(snapshot: Snapshot) -> bool:
    """A compaction commit: a replace that swapped data files (manifest rewrites swap none)."""
    summary = snapshot.summary
    return summary is not None and swaps_data_files(summary.operation.value, summary.additional_properties)


def swaps_data_files(operation: str, summary: Mapping[str, str]) -> bool:
    """is_data_rewrite on a snapshot's operation and summary, as pyiceberg or Iceberg's Java
    API (expire_snapshots) hands them."""
    return operation == Operation.REPLACE.value and int(summary.get("deleted-data-files") or 0) > 0


def ranges_changed_since(table: Table, spec: MirroredTable, since: int) -> set[datetime] | None:
    """The offload ranges (their starts) whose rows may differ from what they were at snapshot
    `since`: those an offload commit after it on the current ancestry wrote. None when that
    cannot be told: `since` is not on the ancestry (rolled back, or expired), or a later
    snapshot is neither an offload's nor a manifest rewrite. A compaction's data rewrite is
    meant to keep the rows, but what relies on this (a proof of equality kept instead of
    read again) does not take it on trust: its check (compaction_preserved_content) fails
    after the commit, and nothing rolls it back.
    An offload commit is one snapshot; before that it was a delete then an append, whose
    delete carries the run id only and touched the ranges of the append above it (such
    histories are still read)."""
    changed: set[datetime] = set()
    above: Snapshot | None = None  # the snapshot visited before (the child)
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        if snapshot.snapshot_id == since:
            return changed
        entries = _entries(snapshot)
        props = snapshot.summary.additional_properties if snapshot.summary else {}
        operation = snapshot.summary.operation if snapshot.summary else None
        if entries:
            changed |= {spec.offload_range(hour_of(key))[0] for key in entries}
        elif operation == Operation.REPLACE and not is_data_rewrite(snapshot):
            pass  # a manifest rewrite: the same files
        elif not (RUN_ID in props and above is not None and _run_id(above) == props[RUN_ID] and _entries(above)):
            return None
        above = snapshot
    return None


def _run_id(snapshot: Snapshot) -> str | None:
    return (snapshot.summary.additional_properties if snapshot.summary else {}).get(RUN_ID)


def snapshot_id(table: Table) -> int | None:
    """The table's current snapshot, by id (None: an empty table)."""
    current = table.current_snapshot()
    return current.snapshot_id if current else None


def range_key(spec: MirroredTable, hour: datetime) -> str:
    """The key an offload range's bookkeeping is kept under: its start's partition key."""
    return partition_key_of(spec.offload_range(hour)[0])
