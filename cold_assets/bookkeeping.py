"""The offload's bookkeeping in Iceberg snapshot summaries, and reading it back.

Every offload commit carries, in its snapshot summary, what it did for which partition
(`cold-assets.partition`, `.mode`, `.rows`, `.run-id`, `.watermark`, `.fingerprint`). That
makes the table its own record: a crash between the Iceberg commit and Dagster's event loses
nothing. Only the ancestry of the current snapshot is the table's history; a snapshot that
a rollback left behind still sits in the metadata, but its bookkeeping is not the table's.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot, ancestors_of

from cold_assets.partitions import hour_of
from cold_assets.tables import MirroredTable

SUMMARY = "cold-assets."  # prefix of our snapshot summary properties


class StateSource(str, Enum):
    """Where the state an offload started from came from."""

    NONE = "none"
    DAGSTER = "dagster"
    SNAPSHOT = "snapshot"
    DATA = "data"  # the cold files' own statistics


@dataclass(frozen=True)
class PartitionState:
    """What is known about one offloaded (table, hour): from Dagster metadata or a snapshot."""

    watermark: datetime | None = None  # append: rows ingested up to here are in cold
    fingerprint: str | None = None  # replace: "rows:checksum" of the rows last written
    snapshot_id: int | None = None
    run_id: str | None = None
    source: StateSource = StateSource.NONE

    def to_summary(self, partition_key: str, mode: str, rows: int) -> dict[str, str]:
        props = {
            f"{SUMMARY}partition": partition_key,
            f"{SUMMARY}mode": mode,
            f"{SUMMARY}rows": str(rows),
            f"{SUMMARY}run-id": self.run_id or "",
        }
        if self.watermark is not None:
            props[f"{SUMMARY}watermark"] = self.watermark.isoformat()
        if self.fingerprint is not None:
            props[f"{SUMMARY}fingerprint"] = self.fingerprint
        return props


def _state_of(snapshot: Snapshot) -> PartitionState:
    props = snapshot.summary.additional_properties if snapshot.summary else {}
    watermark = props.get(f"{SUMMARY}watermark")
    return PartitionState(
        watermark=datetime.fromisoformat(watermark) if watermark else None,
        fingerprint=props.get(f"{SUMMARY}fingerprint"),
        snapshot_id=snapshot.snapshot_id,
        run_id=props.get(f"{SUMMARY}run-id"),
        source=StateSource.SNAPSHOT,
    )


def committed_states(table: Table, spec: MirroredTable) -> dict[datetime, PartitionState]:
    """Per offload range (its start: the hour, or the day of the daily bars): the bookkeeping
    of the newest commit on the current snapshot's ancestry. Expired snapshots are gone, and
    so is their bookkeeping; the cold files' statistics are the floor under that."""
    states: dict[datetime, PartitionState] = {}
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        props = snapshot.summary.additional_properties if snapshot.summary else {}
        key = props.get(f"{SUMMARY}partition")
        if key:
            states.setdefault(spec.offload_range(hour_of(key))[0], _state_of(snapshot))
    return states


def committed_state(table: Table, spec: MirroredTable, hour: datetime) -> PartitionState | None:
    """The newest commit on the current ancestry that wrote `hour`'s offload range."""
    start = spec.offload_range(hour)[0]
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        props = snapshot.summary.additional_properties if snapshot.summary else {}
        key = props.get(f"{SUMMARY}partition")
        if key and spec.offload_range(hour_of(key))[0] == start:
            return _state_of(snapshot)
    return None


def describes_table(table: Table, recorded: PartitionState | None) -> bool:
    """Whether Dagster's record may still describe the table: its snapshot is on the current
    ancestry, or has been expired (older than every snapshot kept). A snapshot the table still
    knows but whose ancestry it left was rolled back: the record is stale."""
    if recorded is None or recorded.snapshot_id is None:
        return recorded is not None
    if any(s.snapshot_id == recorded.snapshot_id for s in ancestors_of(table.current_snapshot(), table.metadata)):
        return True
    return table.metadata.snapshot_by_id(recorded.snapshot_id) is None


