"""The phases one offload range goes through in a checkpoint, each an immutable value holding
what the next phase needs (protocol.py runs them in order):

    planned (plan.py)  ->  read into data files (stream.py)  ->  matched, decided (commit.py)  ->  committed

A range decided while planning (cold-only, or unchanged since its last offload) is `Settled`
and skips the read; a `ToRead` range carries its read and its delete. After the read, each
range is `Written` (its rows are in data files, not yet part of the table); its delete
filter is matched against the cold files (`ColdMatch`), and it is `Decided` (appended,
replaced or unchanged) or refused (`ColdRowsWouldBeLost`, nothing of it written).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

import pyarrow as pa
from pyiceberg.expressions import BooleanExpression
from pyiceberg.manifest import DataFile

from cold_assets.hours import HourPolicy, HourStatus
from cold_assets.offload.bookkeeping import OffloadSource, PartitionState
from cold_assets.offload.reprocessed import Mark
from cold_assets.parity.checksums import fingerprint
from cold_assets.tables import MirroredTable


class Outcome(str, Enum):
    """What an offload did to its hour."""

    APPEND = "append"
    REPLACE = "replace"
    UNCHANGED = "unchanged"
    COLD_ONLY = "cold_only"  # older than the warm retention: not read from warm
    REPROCESSED = "reprocessed"  # reprocessed while warm holds it: kept, not read from warm (offload/reprocessed.py)


@dataclass(frozen=True)
class RunOptions:
    """What one run decides by, the same for every range and checkpoint of it."""

    run_id: str
    settle_lag: timedelta
    replace_hour: bool
    overlap: timedelta
    allow_fewer_rows: bool
    now: datetime  # the warm clock, read once per run
    policy: HourPolicy
    source: OffloadSource = OffloadSource.WARM
    # A reprocess's ranges (their starts) whose new rows differ from warm's, and the mark each
    # commit leaves on them (offload/reprocessed.py); any other range it commits is warm's again.
    marked: Mapping[datetime, Mark] = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    """One offload range (an hour; a day for the daily bars) and the run's partition keys it serves."""

    keys: tuple[str, ...]
    start: datetime
    end: datetime
    status: HourStatus


@dataclass(frozen=True)
class Settled:
    """Planned, decided without a read: it stays at `state`."""

    span: Span
    state: PartitionState
    outcome: Outcome  # COLD_ONLY, REPROCESSED or UNCHANGED


@dataclass(frozen=True)
class ReadPlan:
    """The warm rows one range reads (ingested in (after, until]), and the cold rows they replace."""

    after: datetime
    until: datetime
    row_hash: bool  # replace layers fingerprint the rows they write
    newer_than: datetime | None  # append: rows ingested after the watermark are new
    delete_filter: BooleanExpression  # the cold rows this range owns
    new_state: PartitionState  # the bookkeeping a commit of it records (its fingerprint comes from the read)

    def bounds(self) -> tuple[datetime, datetime, bool]:
        """Ranges with equal bounds are read by one query."""
        return (self.after, self.until, self.row_hash)


@dataclass(frozen=True)
class ToRead:
    """Planned, with a read: `state` is where it starts from (reconciled)."""

    span: Span
    state: PartitionState
    read: ReadPlan


@dataclass(frozen=True)
class WarmRead:
    """What the stream delivered for one range: rows, their summed row hashes, rows newer than
    its watermark."""

    rows: int = 0
    checksum: int = 0
    newer_rows: int = 0

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rows, self.checksum)


@dataclass(frozen=True)
class Written:
    """Read: its rows are in `data_files`, which no snapshot references yet."""

    planned: ToRead
    warm: WarmRead
    data_files: tuple[DataFile, ...]


@dataclass(frozen=True)
class ColdMatch:
    """The cold rows one range's delete filter matches on the snapshot it is decided on: files
    matched whole, and files matched in part with the positions of their matched rows."""

    whole: tuple[tuple[DataFile, int], ...] = ()  # each with its rows
    partial: tuple[tuple[DataFile, pa.Array], ...] = ()

    @property
    def rows(self) -> int:
        return sum(rows for _, rows in self.whole) + sum(len(positions) for _, positions in self.partial)


@dataclass(frozen=True)
class Decided:
    """What a range that was read becomes: APPEND or REPLACE go into the commit, UNCHANGED not
    (its files are deleted). `matched`: the cold rows its commit replaces."""

    written: Written
    outcome: Outcome
    new_state: PartitionState
    matched: ColdMatch

    @property
    def commits(self) -> bool:
        return self.outcome in (Outcome.APPEND, Outcome.REPLACE)


class ColdRowsWouldBeLost(RuntimeError):
    """Warm holds fewer rows than the cold rows a commit would replace: the warm tier lost
    rows (a dropped part, a TTL), and cold is their only copy. Nothing was written."""

    def __init__(self, spec: MirroredTable, partition_keys: list[str], warm_rows: int, cold_rows: int, what: str):
        self.table, self.warm_rows, self.cold_rows = spec.cold, warm_rows, cold_rows
        # The run's partition keys the refused range serves (the daily bars' day serves 24).
        self.partition_keys = list(partition_keys)
        self.partition_key = self.partition_keys[0]
        super().__init__(
            f"cold.{spec.cold} hour {self.partition_key}: warm {spec.warm} has {warm_rows} rows where cold holds "
            f"{cold_rows} ({what}); replacing them would delete {cold_rows - warm_rows} cold rows, so the "
            "offload of this hour was refused and nothing was written. If the deletion is meant (correcting "
            "history), run it again with allow_fewer_rows: true"
        )
