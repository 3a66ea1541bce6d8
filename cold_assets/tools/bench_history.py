"""`cold-assets bench history`: what a long history costs, measured in one run on throwaway state.

A warm tier of `days` days at demo volume (every table of the medallion), then, each in its
own process as Dagster's run workers would do it:

1. the first backfill of that history: the offload job over the whole range in as many runs
   as the asset's backfill policy needs (at most 168 hours each), one after another as the
   embedded instance's queue runs them, checks included, beside the read + write floors of
   the same rows;
2. the offload cost of one table-hour (the median of each hour's share of its checkpoint)
   in the first and the last tenth of the history, from the runs' own per-hour metadata.
   The runs are cut to equal lengths so that both tenths are measured in runs of one size:
   the UI's backfill cuts 168-hour runs from the start and leaves a short last one, and a
   run's fixed costs (gold_ohlcv_1d commits once a run) would land on fewer hours there;
3. the 15-minute tick after that history (previous and current hour, ten tables, one run),
   and one tick of each sensor that computes parity (self-healing, TTL guard);
4. the nightly compaction and snapshot expiry (its own 7-day retention: nothing younger is
   expired), then OHLCV over one day and over the whole history through the federated view
   `gold_ohlcv_1m_all` against the warm read alone, medians of interleaved repeats;
5. snapshots, manifests and metadata bytes per table.
"""

import cProfile
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlparse

import pyarrow.parquet as pq
from pyiceberg.manifest import ManifestContent
from pyiceberg.table import Table

from cold_assets.cold.files import parquet_options
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.partitions import partition_key_of
from cold_assets.settings import Settings, throwaway_env
from cold_assets.tables import TABLES, MirroredTable, table_by_cold_name
from cold_assets.tools.bench import DEMO_TRADES_PER_HOUR, bench_settings, build_bench_warm, child_json, maintenance_child_run
from cold_assets.warm.isolated import PROFILE_ENV

if TYPE_CHECKING:
    from dagster import DagsterInstance, Definitions

BACKFILL_RUN_HOURS = 168  # assets.PARTITIONS_PER_BACKFILL_RUN: the longest run the UI's backfill launches


def backfill_runs(keys: list[str], most: int = BACKFILL_RUN_HOURS) -> list[list[str]]:
    """`keys` in as few runs of at most `most` hours as the backfill policy allows, of equal
    lengths (within one hour), in order."""
    if not keys:
        return []
    count = -(-len(keys) // most)
    size, extra = divmod(len(keys), count)
    runs, at = [], 0
    for i in range(count):
        length = size + (1 if i < extra else 0)
        runs.append(keys[at : at + length])
        at += length
    return runs


def history_window(days: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) of the backfilled history: `days` days up to the previous hour (which is
    the tick's), three hours short: the first hour then starts 30 days - 2 h before the
    current hour, and stays inside the warm tier's 30-day retention for at least an hour of
    benchmark. (An hour past it is cold-only, never read from warm: a run that crossed that
    line would leave it out, rightly.)"""
    now = now or datetime.now(UTC)
    end = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return end - timedelta(hours=24 * days - 3), end


def floors_of(settings: Settings, start: datetime, end: datetime, tables: Sequence[MirroredTable] = TABLES) -> dict:
    """The same rows as the backfill, read by the same queries into Arrow (stream drained)
    and written by pyarrow.parquet with the same options, a day at a time, nothing else."""
    from cold_assets.warm.read import read_columns, warm_read_query

    catalog = IcebergResource.from_settings(settings).catalog()
    read_s = write_s = 0.0
    rows = 0
    out = settings.home / "floor"
    out.mkdir(exist_ok=True)
    with ClickHouseResource.from_settings(settings).connect() as client:
        for spec in tables:
            columns = read_columns(client, spec)
            options = None
            day = start
            while day < end:
                hi = min(day + timedelta(days=1), end)
                query = warm_read_query(client, spec, columns, day, hi)
                started = time.perf_counter()
                arrow = client.query_arrow(query.sql, parameters=query.parameters)
                read_s += time.perf_counter() - started
                options = options or parquet_options(catalog.load_table(spec.cold_identifier).properties, arrow.schema)
                started = time.perf_counter()
                pq.write_table(arrow, out / f"{spec.cold}-{day:%Y%m%d%H}.parquet", **options)
                write_s += time.perf_counter() - started
                rows += arrow.num_rows
                day = hi
    return {"rows": rows, "read_s": read_s, "write_s": write_s}


def history_child(start: str, end: str) -> None:
    """Runs in a child process with the throwaway environment: the backfill's runs, the
    per-hour costs they recorded, the tick and the sensors' ticks. Prints one JSON line."""
    from dagster import AssetRecordsFilter, build_schedule_context

    from cold_assets.definitions import build_definitions
    from cold_assets.defs.assets import cold_asset_key
    from cold_assets.defs.schedules import OFFLOAD_JOB
    from cold_assets.tools.instance import embedded_instance

    settings = Settings.from_env()
    defs = build_definitions(settings)
    job = defs.resolve_job_def(OFFLOAD_JOB)
    instance = embedded_instance(settings)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    first, last = datetime.fromisoformat(start), datetime.fromisoformat(end)
    keys = [partition_key_of(first + timedelta(hours=h)) for h in range(int((last - first) / timedelta(hours=1)))]
    runs = []
    # What the runs spend writing Dagster's event log (planned and materialization events of
    # every table-hour, logs, check results), timed where the instance stores each event.
    event_log = {"events": 0, "seconds": 0.0}
    storage = instance.event_log_storage
    store_event = storage.store_event

    def timed_store_event(event: object) -> None:
        t = time.perf_counter()
        try:
            store_event(event)  # type: ignore[arg-type]
        finally:
            event_log["events"] += 1
            event_log["seconds"] += time.perf_counter() - t

    storage.store_event = timed_store_event  # type: ignore[method-assign]
    started = time.perf_counter()
    for chunk in backfill_runs(keys):
        tags = {"dagster/asset_partition_range_start": chunk[0], "dagster/asset_partition_range_end": chunk[-1]}
        t = time.perf_counter()
        result = job.execute_in_process(instance=instance, tags=tags, run_config=quiet, raise_on_error=False)
        if not result.success:
            raise RuntimeError(f"backfill run {chunk[0]}..{chunk[-1]} failed")
        runs.append(round(time.perf_counter() - t, 2))
    backfill_s = time.perf_counter() - started
    storage.store_event = store_event  # type: ignore[method-assign]
    catalog = IcebergResource.from_settings(settings).catalog()
    cold_rows = sum(catalog.load_table(t.cold_identifier).scan().count() for t in TABLES)

    # Each hour's share of its checkpoint, from its own materialization.
    tenth = max(1, len(keys) // 10)
    per_table = {}
    for spec in TABLES:
        seconds: dict[str, float] = {}
        cursor = None
        while True:
            page = instance.fetch_materializations(AssetRecordsFilter(asset_key=cold_asset_key(spec)), limit=1000, cursor=cursor)
            for record in page.records:
                if record.partition_key and record.asset_materialization is not None:
                    value = record.asset_materialization.metadata.get("duration_s")
                    if value is not None:
                        seconds.setdefault(record.partition_key, float(cast(float, value.value)))
            if not page.has_more:
                break
            cursor = page.cursor
        first_tenth = statistics.median(seconds[k] for k in keys[:tenth])
        last_tenth = statistics.median(seconds[k] for k in keys[-tenth:])
        per_table[spec.cold] = {
            "first_tenth_s": round(first_tenth, 4),
            "last_tenth_s": round(last_tenth, 4),
            "last_over_first": round(last_tenth / first_tenth, 2) if first_tenth else None,
        }

    # The schedule's tick after that history: its one run, as the daemon would launch it.
    schedule = defs.resolve_schedule_def("offload_every_15_minutes")
    requests = schedule.evaluate_tick(
        build_schedule_context(instance=instance, scheduled_execution_time=datetime.now(UTC), repository_def=defs.get_repository_def())
    ).run_requests or []
    t = time.perf_counter()
    for request in requests:
        result = job.execute_in_process(instance=instance, tags=dict(request.tags or {}), run_config=quiet, raise_on_error=False)
        if not result.success:
            raise RuntimeError("the tick's run failed")
    tick_s = time.perf_counter() - t

    sensors = sensor_tick_seconds(defs, instance)
    print(
        json.dumps(
            {
                "hours": len(keys),
                "runs_s": runs,
                "backfill_s": backfill_s,
                "event_log": {"events": event_log["events"], "seconds": round(event_log["seconds"], 1)},
                "cold_rows": cold_rows,
                "per_table_hour": per_table,
                "tick": {"runs": len(requests), "seconds": round(tick_s, 2)},
                "sensor_tick_s": sensors,
            }
        )
    )


def sensor_tick_seconds(
    defs: "Definitions", instance: "DagsterInstance", profile_to: Path | None = None, cursors: dict[str, str | None] | None = None
) -> dict[str, float]:
    """One tick of each sensor that computes parity (self-healing, TTL guard), timed; under
    cProfile if `profile_to` is given, its stats kept as <profile_to>-<sensor>.pstats (and its
    look at the embedded tier, in a child process, as <profile_to>-<sensor>-child-<look>.pstats). With
    `cursors`, each sensor starts from its cursor there and leaves its new one, as the daemon
    carries it from tick to tick; without, from none (a first tick)."""
    from dagster import SkipReason, build_sensor_context

    resources = {key: (defs.resources or {})[key] for key in ("clickhouse", "iceberg")}
    seconds = {}
    for name in ("self_healing", "ttl_guard"):
        sensor = defs.resolve_sensor_def(name)
        profile = cProfile.Profile() if profile_to else None
        cursor = cursors.get(name) if cursors is not None else None
        if profile_to:
            os.environ[PROFILE_ENV] = f"{profile_to}-{name}-child"
        with build_sensor_context(instance=instance, resources=resources, definitions=defs, cursor=cursor) as context:
            started = time.perf_counter()
            try:
                result = profile.runcall(sensor, context) if profile is not None else sensor(context)
            finally:
                os.environ.pop(PROFILE_ENV, None)
            seconds[name] = round(time.perf_counter() - started, 2)
            if isinstance(result, SkipReason) and "busy" in (result.skip_message or ""):
                raise RuntimeError(f"bench: the {name} sensor's tick did not look (its time would mean nothing): {result.skip_message}")
            if cursors is not None:
                cursors[name] = context.cursor
        if profile is not None:
            profile.dump_stats(f"{profile_to}-{name}.pstats")
    return seconds


def metadata_facts(table: Table) -> dict:
    """Snapshots, manifests of the current snapshot (their bytes and the live data files they
    list), and the bytes of the metadata folder (metadata.json files, manifest lists,
    manifests) of one table."""
    current = table.current_snapshot()
    manifests = current.manifests(table.io) if current else []
    data_manifests = [m for m in manifests if m.content == ManifestContent.DATA]
    folder = Path(urlparse(table.location()).path) / "metadata"
    files = [f for f in folder.glob("*") if f.is_file()] if folder.exists() else []
    return {
        "snapshots": len(table.snapshots()),
        "manifests": len(manifests),
        "manifest_bytes": sum(m.manifest_length for m in manifests),
        "live_data_files": sum((m.added_files_count or 0) + (m.existing_files_count or 0) for m in data_manifests),
        "metadata_json_files": sum(1 for f in files if f.name.endswith(".metadata.json")),
        "metadata_bytes": sum(f.stat().st_size for f in files),
        "current_metadata_json_bytes": Path(urlparse(table.metadata_location).path).stat().st_size,
    }


def _ohlcv(settings: Settings, start: datetime, end: datetime, repeats: int) -> dict:
    from cold_assets.federation import federate
    from cold_assets.tools.bench import ohlcv_latency

    spec = table_by_cold_name("gold_ohlcv_1m")
    catalog = IcebergResource.from_settings(settings).catalog()
    table = catalog.load_table(spec.cold_identifier)
    figures: dict = {}
    with ClickHouseResource.from_settings(settings).connect() as client:
        (federation,) = federate(client, catalog, tables=[spec])
        figures["cutover"] = federation.cutover.isoformat() if federation.cutover else None
        ranges = {"one_day": (end - timedelta(days=1), end), "whole_history": (start, end)}
        figures |= ohlcv_latency(client, table, spec, ranges, repeats, "bench history")
    return figures


def bench_history(days: int = 30, parent: str | None = None, trades_per_hour: int = DEMO_TRADES_PER_HOUR, repeats: int = 5) -> dict:
    from cold_assets.defs.nightly import COMPACTION_JOB, EXPIRY_JOB
    from cold_assets.maintenance.spark import require_spark

    start, end = history_window(days)
    require_spark(Settings.from_env())  # the nightly jobs come last, after the hours of backfill
    with bench_settings(parent) as lagless:
        # The product's own settle lag: the backfill's hours are closed, the tick's are live.
        settings = replace(lagless, settle_lag_seconds=Settings.from_env().settle_lag_seconds)
        built = time.perf_counter()
        # The history and the previous hour (the tick's), at demo volume.
        build_bench_warm(settings, trades_per_hour, int((end - start) / timedelta(hours=1)) + 1, bronze_only=False, start=start)
        setup_s = time.perf_counter() - built
        floors = floors_of(settings, start, end)
        # The simulated history was ingested just now; a real one long ago. Once the settle
        # lag has passed, appends see all of it, as a first backfill in production does.
        time.sleep(max(0.0, settings.settle_lag_seconds - (time.perf_counter() - built - setup_s)))
        env = {
            **throwaway_env(settings.home),
            "COLD_SETTLE_LAG_SECONDS": str(settings.settle_lag_seconds),
            "COLD_PARTITIONS_START": partition_key_of(start),
            "COLD_SPARK_JARS_DIR": str(settings.spark_jars_dir),
        }
        dagster = child_json(
            f"from cold_assets.tools.bench_history import history_child; history_child({start.isoformat()!r}, {end.isoformat()!r})",
            env, "bench history: the Dagster runs failed",
        )
        catalog = IcebergResource.from_settings(settings).catalog()
        after_backfill = {t.cold: metadata_facts(catalog.load_table(t.cold_identifier)) for t in TABLES}
        maintenance = {}
        for job_name, config in ((COMPACTION_JOB, {"lookback_days": days + 1}), (EXPIRY_JOB, {})):
            t = time.perf_counter()
            facts = maintenance_child_run(env, job_name, config)
            maintenance[job_name] = {"wall_s": round(time.perf_counter() - t, 1), "success": facts["success"]}
        after_maintenance = {t.cold: metadata_facts(catalog.load_table(t.cold_identifier)) for t in TABLES}
        ohlcv = _ohlcv(settings, start, end, repeats)
    if dagster["cold_rows"] != floors["rows"]:
        raise RuntimeError(
            f"bench history: the backfill left {dagster['cold_rows']} cold rows for {floors['rows']} warm rows "
            "(an hour past the warm retention is cold-only and not read: did the run cross it?)"
        )
    backfill_s = dagster["backfill_s"]
    floor_s = floors["read_s"] + floors["write_s"]
    ratios = [v["last_over_first"] for v in dagster["per_table_hour"].values() if v["last_over_first"] is not None]
    return {
        "benchmark": "history",
        "days": days,
        "hours": dagster["hours"],
        "trades_per_hour": trades_per_hour,
        "setup_s": round(setup_s, 1),
        "backfill": {
            "seconds": round(backfill_s, 1),
            "runs_s": dagster["runs_s"],
            "rows": floors["rows"],
            "cold_rows_after": dagster["cold_rows"],
            "rows_per_s": round(floors["rows"] / backfill_s),
            "read_floor_s": round(floors["read_s"], 1),
            "write_floor_s": round(floors["write_s"], 1),
            "over_floors": round(backfill_s / floor_s, 2),
            # Dagster's own share: the events of every table-hour (planned + materialized).
            "dagster_event_log": dagster["event_log"],
            "without_event_log_over_floors": round((backfill_s - dagster["event_log"]["seconds"]) / floor_s, 2),
        },
        "per_table_hour": dagster["per_table_hour"],
        "worst_last_over_first": max(ratios) if ratios else None,
        "tick_after_history": dagster["tick"],
        "sensor_tick_s": dagster["sensor_tick_s"],
        "maintenance": maintenance,
        "ohlcv_gold_ohlcv_1m_all": ohlcv,
        "metadata": {
            name: {"after_backfill": after_backfill[name], "after_maintenance": after_maintenance[name]} for name in after_backfill
        },
        "targets": {
            "backfill_s": "<= 180 (30 days)",
            "worst_last_over_first": "<= 1.5",
            "tick_after_history_s": "<= 10",
            "whole_history_view_over_warm": "<= 3",
        },
    }
