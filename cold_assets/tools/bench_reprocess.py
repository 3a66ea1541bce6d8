"""`cold-assets bench reprocess`: reprocessing days of history from cold raw, against the
offload's floors.

On throwaway state: `days` days of the simulated feed at demo volume, offloaded through the
offload protocol (no Dagster: the backfill's own figures are `bench history`'s), then
reprocessed twice: with the project's DDL (nothing changes: the comparison's cost), and with
a changed close rule and a bronze change that reaches every derived row (bronze, silver and
gold replaced: the worst case). The floors
are the derived rows read from warm into Arrow and written as Parquet, nothing else."""

import shutil
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cold_assets.cold.ddl import ensure_cold_tables
from cold_assets.defs.recovery import open_scratch
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.hours import HourPolicy
from cold_assets.offload.protocol import offload_partitions
from cold_assets.partitions import partition_key_of
from cold_assets.recovery.reprocess import DERIVED, ReprocessReport, read_reference_data, reprocess
from cold_assets.settings import ddl_dir
from cold_assets.tables import TABLES
from cold_assets.tools.bench import DEMO_TRADES_PER_HOUR, bench_settings, build_bench_warm
from cold_assets.tools.bench_history import floors_of
from cold_assets.warm.ddl import WarmLimits
from cold_assets.warm.read import warm_now

CLOSE_RULE = ("argMaxState(price, (exchange_ts, trade_id))", "argMaxState(price, (received_at, trade_id))")
# Every bronze row's received_at a microsecond later: bronze and silver change everywhere.
BRONZE_CHANGE = (
    "    received_at,\n    ingested_at\nFROM trades_parsed",
    "    received_at + toIntervalMicrosecond(1) AS received_at,\n    ingested_at\nFROM trades_parsed",
)


def bench_reprocess(days: int = 30, parent: str | None = None, trades_per_hour: int = DEMO_TRADES_PER_HOUR) -> dict:
    with bench_settings(parent) as base:
        # Warm keeps the whole history while it is built and offloaded.
        settings = replace(base, warm_retention_days=max(days + 5, base.warm_retention_days))
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
        start = end - timedelta(days=days)
        built = time.perf_counter()
        build_bench_warm(settings, trades_per_hour, 24 * days, bronze_only=False, start=start)
        catalog = IcebergResource.from_settings(settings).catalog()
        ensure_cold_tables(catalog)
        keys = [partition_key_of(start + timedelta(hours=h)) for h in range(24 * days)]
        with ClickHouseResource.from_settings(settings).connect() as client:
            for spec in TABLES:
                table = catalog.load_table(spec.cold_identifier)
                for _ in offload_partitions(
                    client, table, spec, keys, "bench-backfill", settle_lag=timedelta(0),
                    warm_retention=timedelta(days=settings.warm_retention_days), checkpoint_hours=24,
                ):
                    pass
            reference, now = read_reference_data(client), warm_now(client)
        setup_s = time.perf_counter() - built
        floors = floors_of(settings, start, end, DERIVED)
        # The days are past a day's retention: what the reprocess takes them for.
        policy = HourPolicy(warm_retention=now - end)
        ddls = settings.home / "ddl"
        runs = {}
        for name, changes in (("unchanged", []), ("every_derived_row", [CLOSE_RULE, BRONZE_CHANGE])):
            ddl = None
            if changes:
                ddl = ddls / name
                shutil.copytree(ddl_dir() / "clickhouse", ddl)
                for old, new in changes:
                    for path in ddl.glob("*.sql"):
                        if old in path.read_text():
                            path.write_text(path.read_text().replace(old, new))
                            break
                    else:
                        raise RuntimeError(f"bench reprocess: the DDL no longer holds {old!r}")
            started = time.perf_counter()
            report = reprocess(
                catalog, open_scratch, settings.home / "scratch", start, end, f"bench-{name}",
                WarmLimits.from_settings(settings), now, policy, ddl=ddl, reference=reference,
            )
            runs[name] = _run_figures(report, time.perf_counter() - started)
    floor_s = floors["read_s"] + floors["write_s"]
    worst = runs["every_derived_row"]
    return {
        "benchmark": "reprocess",
        "days": days,
        "trades_per_hour": trades_per_hour,
        "setup_s": round(setup_s, 1),
        "runs": runs,
        "floors": {
            "derived_rows": floors["rows"],
            "read_s": round(floors["read_s"], 1),
            "write_s": round(floors["write_s"], 1),
            "rows_per_s": round(floors["rows"] / floor_s),
        },
        # The worst case (every derived row rewritten) against reading and writing those rows once.
        "every_derived_row_over_floors": round(worst["seconds"] / floor_s, 2),
    }


def _run_figures(report: ReprocessReport, seconds: float) -> dict:
    rows_written = sum(c.rows_after for c in report.changes.values())
    return {
        "seconds": round(seconds, 1),
        "raw_rows": report.raw_rows,
        "raw_rows_per_s": round(report.raw_rows / seconds),
        "table_hours_changed": report.hours_changed,
        "table_hours_replaced": sum(c.hours_replaced for c in report.changes.values()),
        "derived_rows_written": rows_written,
    }
