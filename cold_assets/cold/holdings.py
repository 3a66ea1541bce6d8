"""What a table's cold files hold over a span of time, from the manifests' statistics alone."""

from datetime import datetime

from pyiceberg.table import Table

from cold_assets.cold.bounds import bound_micros, instant, micros
from cold_assets.cold.ranges import range_filter
from cold_assets.offload.bookkeeping import snapshot_id
from cold_assets.tables import MirroredTable


class ColdFiles:
    """The cold files of a run's span, planned once: which offload ranges hold any, and the
    newest ingestion among them (the append layers' floor). A run's own commits only touch
    ranges it has finished, so the plan holds for the ranges still to come as long as the
    table's current snapshot is the one it was planned on or the run's own last commit
    (`valid_at`); after anyone else's commit it is planned again."""

    def __init__(self, table: Table, spec: MirroredTable, start: datetime, end: datetime):
        self.valid_at = snapshot_id(table)
        schema = table.schema()
        time_field = schema.find_field(spec.time_column)
        ingest_field = schema.find_field("ingested_at") if "ingested_at" in schema.column_names else None
        # (first, last event time, newest ingestion) in micros; a file without statistics
        # spans every range, and gives no floor (its newest ingestion is unknown).
        self._files: list[tuple[int, int, int | None]] = []
        if table.current_snapshot() is None:
            return
        for task in table.scan(row_filter=range_filter(spec.time_column, start, end)).plan_files():
            lower, upper = task.file.lower_bounds, task.file.upper_bounds
            first, last = bound_micros(lower, time_field), bound_micros(upper, time_field)
            newest = bound_micros(upper, ingest_field) if ingest_field is not None else None
            self._files.append((-(2**62) if first is None else first, 2**62 if last is None else last, newest))

    def _in(self, start: datetime, end: datetime) -> list[tuple[int, int, int | None]]:
        lo, hi = micros(start), micros(end)
        return [f for f in self._files if f[0] < hi and f[1] >= lo]

    def holds(self, start: datetime, end: datetime) -> bool:
        return bool(self._in(start, end))

    def newest_ingestion(self, start: datetime, end: datetime) -> datetime | None:
        newest = [f[2] for f in self._in(start, end) if f[2] is not None]
        return instant(max(newest)) if newest else None
