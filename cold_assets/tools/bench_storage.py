"""`cold-assets bench storage`: what the cold tier costs to keep, against the warm tier's own
storage of the same rows, measured in one run on throwaway state.

`hours` hours (default 24) at a production-like rate (default 100,000 trades/hour) through
the whole medallion, merged by ClickHouse (OPTIMIZE FINAL: the parts a server holds after a
while, with the DDL's codecs), offloaded hour by hour as the schedule does, then compacted by
the nightly compaction job in its own process. Per table: rows; warm uncompressed and
compressed bytes; hourly and compacted cold file bytes; bytes per row of each column before
and after compaction; and the ratios the long-term store is judged by.
"""

import math
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client
from pyiceberg.table import Table

from cold_assets.cold.manifests import live_data_files
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.partitions import partition_key_of
from cold_assets.settings import throwaway_env
from cold_assets.tables import TABLES, Layer
from cold_assets.tools.bench import bench_settings, build_bench_warm, maintenance_child_run
from cold_assets.warm.read import identifier, render

PRODUCTION_TRADES_PER_HOUR = 100_000


def _warm_bytes(client: Client) -> dict[str, dict]:
    """Rows and bytes of each warm table's active parts, and compressed bytes per column."""
    facts = {}
    for spec in TABLES:
        name = identifier(spec.warm)
        client.command(f"OPTIMIZE TABLE {name} FINAL")
        rows, compressed, uncompressed = client.query(render("storage_parts"), parameters={"table": spec.warm}).result_rows[0]
        column_rows = client.query(render("storage_columns"), parameters={"table": spec.warm}).result_rows
        columns = {str(name): int(size) for name, size in column_rows}
        if not any(columns.values()):
            # Compact parts (ClickHouse's format for small parts: every column in one file)
            # have no per-column sizes; the table's own bytes above are still exact.
            columns = {}
        facts[spec.cold] = {
            "rows": int(rows), "compressed": int(compressed), "uncompressed": int(uncompressed),
            "columns": {k: int(v) for k, v in columns.items()},
        }
    return facts


def _cold_bytes(table: Table) -> dict:
    """Bytes of the live data files of a cold table, and compressed bytes per column (from
    the Parquet footers: the column chunks' sizes)."""
    files = live_data_files(table)
    per_column: dict[str, int] = defaultdict(int)
    footers = 0
    for data_file in files:
        metadata = pq.ParquetFile(Path(urlparse(data_file.file_path).path)).metadata
        footers += metadata.serialized_size + 8  # the footer, its length and the magic
        for g in range(metadata.num_row_groups):
            group = metadata.row_group(g)
            for c in range(group.num_columns):
                chunk = group.column(c)
                per_column[chunk.path_in_schema] += chunk.total_compressed_size
    return {
        "files": len(files),
        "rows": sum(f.record_count for f in files),
        "bytes": sum(f.file_size_in_bytes for f in files),
        "columns": dict(per_column),
        "footer_bytes": footers,  # a file's fixed cost: schema, statistics, Iceberg's schema JSON
    }


def _per_row(columns: dict[str, int], rows: int) -> dict[str, float]:
    return {name: round(size / rows, 2) for name, size in sorted(columns.items(), key=lambda kv: -kv[1])} if rows else {}


def bench_storage(hours: int = 24, trades_per_hour: int = PRODUCTION_TRADES_PER_HOUR, parent: str | None = None) -> dict:
    from cold_assets.defs.nightly import COMPACTION_JOB
    from cold_assets.offload.protocol import offload_partitions

    # Closed days only, ending at the start of today: compaction rewrites none of today's hours.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=math.ceil(hours / 24))
    keys = [partition_key_of(start + timedelta(hours=h)) for h in range(hours)]
    with bench_settings(parent) as settings:
        started = time.perf_counter()
        build_bench_warm(settings, trades_per_hour, hours, bronze_only=False, start=start)
        catalog = IcebergResource.from_settings(settings).catalog()
        with ClickHouseResource.from_settings(settings).connect() as client:
            warm = _warm_bytes(client)
            for spec in TABLES:
                table = catalog.load_table(spec.cold_identifier)
                # Hour by hour, as the schedule writes them: the files compaction starts from.
                for key in keys:
                    for _ in offload_partitions(client, table, spec, [key], "bench", settle_lag=timedelta(0)):
                        pass
        setup_s = time.perf_counter() - started
        hourly = {t.cold: _cold_bytes(catalog.load_table(t.cold_identifier)) for t in TABLES}
        env = {**throwaway_env(settings.home), "COLD_SPARK_JARS_DIR": str(settings.spark_jars_dir)}
        started = time.perf_counter()
        compaction = maintenance_child_run(env, COMPACTION_JOB, {"lookback_days": (hours // 24) + 3})
        compaction_s = time.perf_counter() - started
        compacted = {t.cold: _cold_bytes(catalog.load_table(t.cold_identifier)) for t in TABLES}
    tables = {}
    for spec in TABLES:
        w, h, c = warm[spec.cold], hourly[spec.cold], compacted[spec.cold]
        if not (h["rows"] == c["rows"] == w["rows"]):
            raise RuntimeError(f"bench storage: {spec.cold} rows differ: warm {w['rows']}, hourly {h['rows']}, compacted {c['rows']}")
        tables[spec.cold] = {
            "rows": c["rows"],
            "warm_uncompressed_bytes": w["uncompressed"],
            "warm_compressed_bytes": w["compressed"],
            "cold_hourly_bytes": h["bytes"],
            "cold_hourly_files": h["files"],
            "cold_compacted_bytes": c["bytes"],
            "cold_compacted_files": c["files"],
            "compacted_over_warm_compressed": round(c["bytes"] / w["compressed"], 3),
            "warm_uncompressed_over_compacted": round(w["uncompressed"] / c["bytes"], 2),
            "compacted_over_hourly": round(c["bytes"] / h["bytes"], 3),
            "cold_compacted_footer_bytes": c["footer_bytes"],
            "bytes_per_row": {
                "warm_compressed": _per_row(w["columns"], w["rows"]) or "compact parts: no per-column sizes",
                "cold_hourly": _per_row(h["columns"], h["rows"]),
                "cold_compacted": _per_row(c["columns"], c["rows"]),
            },
        }
    total = {
        key: sum(t[key] for t in tables.values())
        for key in ("rows", "warm_uncompressed_bytes", "warm_compressed_bytes", "cold_hourly_bytes", "cold_compacted_bytes")
    }
    total["compacted_over_warm_compressed"] = round(total["cold_compacted_bytes"] / total["warm_compressed_bytes"], 3)
    trades = [t for t in TABLES if t.layer is not Layer.GOLD]
    return {
        "benchmark": "storage",
        "hours": hours,
        "trades_per_hour": trades_per_hour,
        "setup_s": round(setup_s, 1),
        "compaction_s": round(compaction_s, 1),
        "compaction_success": compaction["success"],
        "tables": tables,
        "total": total,
        "targets": {
            "compacted_over_warm_compressed": {t.cold: "<= 0.6" if t in trades else "<= 1.0" for t in TABLES},
            "raw_trades_warm_uncompressed_over_compacted": ">= 12",
            "compacted_over_hourly": "<= 1.0",
        },
        "met": {
            "compacted_over_warm_compressed": all(
                tables[t.cold]["compacted_over_warm_compressed"] <= (0.6 if t in trades else 1.0) for t in TABLES
            ),
            "raw_trades_12_to_1": tables["raw_trades"]["warm_uncompressed_over_compacted"] >= 12,
            "never_bigger_after_compaction": all(t["compacted_over_hourly"] <= 1.0 for t in tables.values()),
        },
    }
