"""Cold rows into a ClickHouse staging table: what restore and reprocess both start from."""

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog

from cold_assets.cold.ranges import range_filter
from cold_assets.tables import MirroredTable


@dataclass(frozen=True)
class Copied:
    columns: list[str]  # the columns both the cold table and the caller's list have, copied
    rows: int


def copy_cold_rows(
    client: Client, catalog: Catalog, spec: MirroredTable, stage: str, start: datetime, end: datetime, wanted: list[str]
) -> Copied:
    """Copies `spec`'s cold rows of [start, end) into the table `stage`, batch by batch, the
    columns of `wanted` the cold table has."""
    table = catalog.load_table(spec.cold_identifier)
    present = {f.name for f in table.schema().fields}
    columns = [c for c in wanted if c in present]
    if table.current_snapshot() is None:
        return Copied(columns, 0)
    rows = 0
    scan = table.scan(row_filter=range_filter(spec.time_column, start, end), selected_fields=tuple(columns))
    for batch in scan.to_arrow_batch_reader():
        if batch.num_rows:
            client.insert_arrow(stage, pa.Table.from_batches([batch]))
            rows += batch.num_rows
    return Copied(columns, rows)
