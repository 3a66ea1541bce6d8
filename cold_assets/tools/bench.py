"""`cold-assets bench`: the figures the issues ask for, measured in one run on throwaway state.

Every benchmark works in a fresh temporary COLD_HOME (under --home, default the system temp
folder), so it measures the product's own code path on known data and leaves the user's
state alone. `offload` (the default) prints one JSON object:

- end_to_end: one bronze hour of --rows rows offloaded by offload_partition (the asset's own
  code path), in a child process so that its peak RSS is the offload's alone;
- read_floor: the same ClickHouse query into Arrow, stream drained, nothing else;
- write_floor: pyarrow.parquet writing the same rows with the same options, no Iceberg;
- hourly_file_compression: ClickHouse's uncompressed bytes of the hour / the hourly files'
  bytes (the storage the cold tier keeps is `bench storage`'s);
- dagster: a single run of 24 partitions x 9 assets at demo volume through a real instance.
"""

import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
from clickhouse_connect.driver.client import Client
from pyiceberg.table import Table

from cold_assets.cold.ddl import ensure_cold_tables
from cold_assets.cold.files import parquet_options
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.partitions import partition_key_of
from cold_assets.settings import Settings, throwaway, throwaway_env
from cold_assets.tables import MirroredTable, table_by_cold_name
from cold_assets.tools.simulate import FeedConfig, simulate
from cold_assets.warm.ddl import WarmLimits, apply_warm_ddl
from cold_assets.warm.read import read_query, warm_columns

if TYPE_CHECKING:  # Dagster is imported where a benchmark needs it, not by every command
    from dagster import JobDefinition

# Two days back: closed, and well inside the warm tier's 30-day TTL (older rows would be
# dropped by ClickHouse as they are inserted).
BENCH_START = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)
BENCH_PARTITION = partition_key_of(BENCH_START)
DEMO_TRADES_PER_HOUR = 20_000
RUNS_PER_SIDE = 12


@contextmanager
def bench_settings(parent: str | None) -> Iterator[Settings]:
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)  # --home names a folder to work under
    with tempfile.TemporaryDirectory(prefix="cold-bench-", dir=parent) as tmp:
        # Never the configured warm tier or catalog: a benchmark writes millions of simulated rows.
        yield replace(throwaway(Settings.from_env(), Path(tmp)), settle_lag_seconds=0)


def _vmhwm_mb(pid: int | str) -> float | None:
    """A process's peak resident set. VmHWM belongs to the address space, so unlike
    getrusage's ru_maxrss it does not carry the forking parent's peak across exec."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def peak_rss_mb() -> float:
    own = _vmhwm_mb("self")
    return own if own is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_bench_warm(settings: Settings, trades_per_hour: int, hours: int, bronze_only: bool, start: datetime = BENCH_START,
                     hours_before: int = 0, ingested_from: datetime | None = None) -> None:
    """`hours` of the simulated feed from `start`; `hours_before` resumes a build that fed
    that many hours up to `start` (trade ids carry on); `ingested_from`: see FeedConfig."""
    warm = ClickHouseResource.from_settings(settings)
    with warm.connect() as client:
        apply_warm_ddl(client, WarmLimits.from_settings(settings))
        if bronze_only:
            # The offload benchmark needs bronze only: keep silver and gold out of the build.
            client.command("DETACH TABLE silver_trades_mv")
        simulate(client, FeedConfig(
            start=start, hours=hours, trades_per_hour=trades_per_hour, hours_before=hours_before, ingested_from=ingested_from,
        ))
    ensure_cold_tables(IcebergResource.from_settings(settings).catalog())


def bench_feed(trades: int, parent: str | None = None) -> dict:
    """Simulated trades into embedded chDB, through the whole materialized-view chain."""
    with bench_settings(parent) as settings:
        with ClickHouseResource.from_settings(settings).connect() as client:
            apply_warm_ddl(client, WarmLimits.from_settings(settings))
            started = time.perf_counter()
            written = simulate(client, FeedConfig(start=BENCH_START, hours=1, trades_per_hour=trades))
            seconds = time.perf_counter() - started
    return {
        "benchmark": "feed",
        "messages": written,
        "seconds": round(seconds, 2),
        "messages_per_s": round(written / seconds),
        "target": "5,000,000 trades in under 60 s",
    }


def _floors(settings: Settings) -> dict:
    spec = table_by_cold_name("bronze_trades")
    warm = ClickHouseResource.from_settings(settings)
    table = IcebergResource.from_settings(settings).catalog().load_table(spec.cold_identifier)
    start, end = spec.offload_range(BENCH_START)
    with warm.connect() as client:
        query = read_query(spec, warm_columns(client, spec.warm), start, end)
        started = time.perf_counter()
        rows = 0
        with client.query_arrow_stream(query.sql, parameters=query.parameters) as stream:
            for batch in stream:
                rows += batch.num_rows
        read_s = time.perf_counter() - started
        arrow = client.query_arrow(query.sql, parameters=query.parameters)
        uncompressed = client.query(
            "SELECT sum(data_uncompressed_bytes) FROM system.parts WHERE active AND table = 'bronze_trades'"
        ).result_rows[0][0]
    with tempfile.TemporaryDirectory(dir=settings.home) as tmp:
        started = time.perf_counter()
        pq.write_table(arrow, f"{tmp}/floor.parquet", **parquet_options(table.properties, arrow.schema))
        write_s = time.perf_counter() - started
    return {"rows": rows, "read_s": read_s, "write_s": write_s, "warm_uncompressed_bytes": int(uncompressed)}


def offload_child(home: str) -> None:
    """Runs in a child process: the end-to-end offload of the bench hour, and its peak RSS."""
    from cold_assets.offload.protocol import offload_partition

    settings = throwaway(Settings.from_env(), Path(home))
    spec = table_by_cold_name("bronze_trades")
    table = IcebergResource.from_settings(settings).catalog().load_table(spec.cold_identifier)
    with ClickHouseResource.from_settings(settings).connect() as client:
        result = offload_partition(
            client, table, spec, BENCH_START, BENCH_PARTITION, "bench", settle_lag=timedelta(0)
        )
    table = table.refresh()
    files = list(table.inspect.files().to_pylist())
    print(
        json.dumps(
            {
                "rows": result.rows_written,
                "seconds": result.seconds,
                "cold_rows": table.scan().count(),
                "files": len(files),
                "cold_bytes": sum(f["file_size_in_bytes"] for f in files),
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def _offload_loop(settings: Settings, keys: list[str]) -> float:
    """The same offloads as the Dagster run, called directly: the baseline of the overhead."""
    from cold_assets.offload.protocol import offload_partitions
    from cold_assets.tables import TABLES

    catalog = IcebergResource.from_settings(settings).catalog()
    started = time.perf_counter()
    with ClickHouseResource.from_settings(settings).connect() as client:
        for spec in TABLES:
            table = catalog.load_table(spec.cold_identifier)
            for _ in offload_partitions(client, table, spec, keys, "bench", settle_lag=timedelta(0)):
                pass
    return time.perf_counter() - started


def _dagster_overhead(parent: str | None) -> dict:
    """A single run of 24 partitions x 9 assets at demo volume through a real instance,
    against the same 216 offloads called directly on a twin built from the same seed."""
    from cold_assets.partitions import partition_key_of

    keys = [partition_key_of(BENCH_START + timedelta(hours=h)) for h in range(24)]
    with bench_settings(parent) as settings, tempfile.TemporaryDirectory(dir=parent) as copy:
        build_bench_warm(settings, DEMO_TRADES_PER_HOUR, 24, bronze_only=False)
        # chDB's data folder does not survive a copy (its catalog links absolute paths), so
        # the twin is built the same way; the feed is deterministic.
        twin = replace(settings, home=Path(copy))
        build_bench_warm(twin, DEMO_TRADES_PER_HOUR, 24, bronze_only=False)
        direct_s = _offload_loop(twin, keys)
        env = {**throwaway_env(settings.home), "COLD_SETTLE_LAG_SECONDS": "0"}
        code = (
            "import time, json;"
            "from cold_assets.definitions import defs, settings;"
            "from cold_assets.tools.instance import embedded_instance;"
            "job = defs.resolve_job_def('offload_cold');"
            "t = time.perf_counter();"
            "r = job.execute_in_process(instance=embedded_instance(settings), tags={"
            f"'dagster/asset_partition_range_start': {keys[0]!r},"
            f"'dagster/asset_partition_range_end': {keys[-1]!r}}});"
            "print(json.dumps({'success': r.success, 'seconds': time.perf_counter() - t}))"
        )
        out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "partitions": len(keys),
        "assets": 9,
        "trades_per_hour": DEMO_TRADES_PER_HOUR,
        "success": result["success"],
        "seconds": round(result["seconds"], 2),
        "same_offloads_without_dagster_s": round(direct_s, 2),
        "dagster_overhead_s": round(result["seconds"] - direct_s, 2),
    }


def bench_offload(rows: int, parent: str | None = None, dagster: bool = True) -> dict:
    with bench_settings(parent) as settings:
        build_bench_warm(settings, rows, 1, bronze_only=True)
        floors = _floors(settings)
        child = subprocess.run(
            [sys.executable, "-c", f"from cold_assets.tools.bench import offload_child; offload_child({str(settings.home)!r})"],
            env=throwaway_env(settings.home), capture_output=True, text=True, check=True,
        )
        e2e = json.loads(child.stdout.strip().splitlines()[-1])
    floor_sum = floors["read_s"] + floors["write_s"]
    result = {
        "benchmark": "offload",
        "rows": e2e["rows"],
        "end_to_end": {"seconds": round(e2e["seconds"], 3), "rows_per_s": round(e2e["rows"] / e2e["seconds"])},
        "read_floor": {"seconds": round(floors["read_s"], 3), "rows_per_s": round(floors["rows"] / floors["read_s"])},
        "write_floor": {"seconds": round(floors["write_s"], 3), "rows_per_s": round(floors["rows"] / floors["write_s"])},
        "end_to_end_over_floors": round(e2e["seconds"] / floor_sum, 3),
        "peak_rss_mb": round(e2e["peak_rss_mb"]),
        # The hot path's files, against ClickHouse's uncompressed bytes of the same hour. What
        # the cold tier costs to keep (compacted, against ClickHouse's compressed parts) is
        # `cold-assets bench storage`.
        "hourly_file_compression": {
            "measured_against": "ClickHouse's uncompressed bytes of the hour (data_uncompressed_bytes)",
            "warm_uncompressed_bytes": floors["warm_uncompressed_bytes"],
            "cold_data_file_bytes": e2e["cold_bytes"],
            "cold_data_files": e2e["files"],
            "warm_uncompressed_over_cold": round(floors["warm_uncompressed_bytes"] / e2e["cold_bytes"], 2),
        },
        "targets": {
            "rows_per_s": ">= 1,000,000",
            "end_to_end_over_floors": "<= 1.25",
            "peak_rss_mb": "< 1024 at 5,000,000 rows",
        },
    }
    if e2e["cold_rows"] != e2e["rows"] or e2e["rows"] != floors["rows"]:
        raise RuntimeError(f"bench offload wrote {e2e['rows']} rows, cold holds {e2e['cold_rows']}, warm {floors['rows']}")
    if dagster:
        result["dagster_single_run"] = _dagster_overhead(parent)
    return result


def print_json(result: dict) -> None:
    print(json.dumps(result, indent=2))


def _offload_job(settings: Settings, with_checks: bool) -> "JobDefinition":
    from cold_assets.definitions import build_definitions
    from cold_assets.defs.schedules import OFFLOAD_JOB

    job = build_definitions(settings).resolve_job_def(OFFLOAD_JOB)
    if not with_checks:
        job = job.get_subset(asset_selection=set(job.asset_layer.executable_asset_keys), asset_check_selection=set())
    return job


def _timed_run(job: "JobDefinition", settings: Settings, key: str, with_checks: bool) -> float:
    """Seconds of one single-partition run of the offload job, checks in or out."""
    from cold_assets.tools.instance import embedded_instance

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    started = time.perf_counter()
    result = job.execute_in_process(instance=embedded_instance(settings), partition_key=key, run_config=quiet)
    seconds = time.perf_counter() - started
    if not result.success:
        raise RuntimeError(f"bench run for {key} failed")
    # Every check of the job's assets, evaluated once (the count was hard-coded to 9 tables).
    expected = len(job.asset_layer.asset_graph.asset_check_keys)
    if with_checks and len(result.get_asset_check_evaluations()) != expected:
        raise RuntimeError(f"expected {expected} check evaluations in the run for {key}, "
                           f"got {len(result.get_asset_check_evaluations())}")
    return seconds


def bench_checks(parent: str | None = None) -> dict:
    """At demo volume: what the parity checks add to a partition's materialization, and the
    audit of the ten tables x 24 hours."""
    from cold_assets.parity.audit import run_audit
    from cold_assets.partitions import partition_key_of

    keys = [partition_key_of(BENCH_START + timedelta(hours=h)) for h in range(24)]
    with bench_settings(parent) as with_checks, bench_settings(parent) as without_checks:
        for settings in (with_checks, without_checks):
            build_bench_warm(settings, DEMO_TRADES_PER_HOUR, 24, bronze_only=False)
        # Same hours on twin warm tiers, runs interleaved so that the machine's drift hits both.
        jobs = {True: _offload_job(with_checks, True), False: _offload_job(without_checks, False)}
        homes = {True: with_checks, False: without_checks}
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for key in keys[:RUNS_PER_SIDE]:
            for checks in (True, False):
                seconds[checks].append(_timed_run(jobs[checks], homes[checks], key, checks))
        runs_with, runs_without = statistics.median(seconds[True]), statistics.median(seconds[False])
        _offload_loop(with_checks, keys)
        with ClickHouseResource.from_settings(with_checks).connect() as client:
            started = time.perf_counter()
            report = run_audit(client, IcebergResource.from_settings(with_checks).catalog(), BENCH_START, BENCH_START + timedelta(hours=24))
            audit_s = time.perf_counter() - started
    return {
        "benchmark": "checks",
        "trades_per_hour": DEMO_TRADES_PER_HOUR,
        "single_partition_runs_per_side": RUNS_PER_SIDE,
        "median_run_with_checks_s": round(runs_with, 3),
        "median_run_without_checks_s": round(runs_without, 3),
        "checks_overhead_pct": round(100 * (runs_with - runs_without) / runs_without, 1),
        "audit_10_tables_x_24_hours_s": round(audit_s, 2),
        "audit_ok": report.ok,
        "targets": {"checks_overhead_pct": "< 20", "audit_s": "< 30"},
    }


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _jvm_pids() -> list[int]:
    """The JVM(s) this process started (Spark's driver, local mode)."""
    found = []
    for pid in _descendants(os.getpid()):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "java":
                found.append(pid)
        except OSError:
            continue
    return found


def jvm_peak_rss_mb() -> float:
    return max((_vmhwm_mb(pid) or 0.0 for pid in _jvm_pids()), default=0.0)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run_cpu_s() -> dict:
    """CPU seconds spent so far by this process and by its JVM: unlike wall time, barely
    moved by other load on the machine, so runs compare across a noisy host."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"python": round(own.ru_utime + own.ru_stime, 1), "jvm": round(sum(_cpu_seconds(pid) for pid in _jvm_pids()), 1)}


def maintenance_child(job_name: str, config: dict) -> None:
    """One maintenance run, as the run worker would do it (its own process, its own JVM)."""
    from cold_assets.definitions import build_definitions
    from cold_assets.tools.instance import embedded_instance

    settings = Settings.from_env()  # the parent's throwaway_env: its COLD_HOME and catalog
    job = build_definitions(settings).resolve_job_def(job_name)
    op = job.graph.node_names()[0]
    result = job.execute_in_process(
        instance=embedded_instance(settings),
        run_config={"ops": {op: {"config": config}}, "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    print(json.dumps({"success": result.success, "jvm_peak_rss_mb": jvm_peak_rss_mb(), "cpu_s": run_cpu_s()}))


def child_json(statement: str, env: dict[str, str], failed: str) -> dict:
    """Runs `statement` in a Python process of its own with `env` (a throwaway environment),
    as Dagster's run workers run; returns the JSON line it printed last. `failed` says what
    failed, before the child's stderr, if it exits non-zero."""
    child = subprocess.run([sys.executable, "-W", "ignore", "-c", statement], env=env, capture_output=True, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"{failed}:\n{child.stderr[-4000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def maintenance_child_run(env: dict[str, str], job_name: str, config: dict) -> dict:
    """`maintenance_child` in its own process with `env` (a throwaway environment)."""
    return child_json(f"from cold_assets.tools.bench import maintenance_child; maintenance_child({job_name!r}, {config!r})",
                      env, f"maintenance job {job_name} failed")


@contextmanager
def _maintenance_state(parent: str | None, state: str | None) -> Iterator[tuple[Settings, bool]]:
    """Throwaway state, or with `state` a folder kept between runs: the offloaded tables are
    saved there once (state.tar) and restored before each measurement, since maintenance
    changes them. Yields the settings and whether the tables still need building."""
    if state is None:
        with bench_settings(parent) as settings:
            yield settings, True
        return
    home = Path(state).resolve()
    home.mkdir(parents=True, exist_ok=True)
    settings = replace(throwaway(Settings.from_env(), home), settle_lag_seconds=0)
    saved = home / "state.tar"
    kept = ["warehouse", "catalog.db"]
    if saved.exists():
        for name in [*kept, "dagster", "catalog.db-wal", "catalog.db-shm"]:
            path = home / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        subprocess.run(["tar", "-xf", str(saved), "-C", str(home)], check=True)
    yield settings, not saved.exists()


def _nightly_runs(settings: Settings, lookback_days: int) -> dict:
    """The compaction job, then the expiry of every snapshot so far, each in its own process
    (as Dagster runs it): wall seconds, the JVM's peak RSS and CPU seconds of each."""
    from cold_assets.defs.nightly import COMPACTION_JOB, EXPIRY_JOB

    env = {**throwaway_env(settings.home), "COLD_SPARK_JARS_DIR": str(settings.spark_jars_dir)}
    configs: dict[str, dict] = {
        COMPACTION_JOB: {"lookback_days": lookback_days},
        EXPIRY_JOB: {"older_than": datetime.now(UTC).isoformat()},  # a real night expires one day of them
    }
    runs = {}
    for job_name, config in configs.items():
        started = time.perf_counter()
        facts = maintenance_child_run(env, job_name, config)
        runs[job_name] = {"wall_s": round(time.perf_counter() - started, 2), **facts}
    return runs


def bench_maintenance(days: int = 7, parent: str | None = None, state: str | None = None) -> dict:
    """The nightly maintenance of the nine tables at demo volume, two nights: the first, after
    `days` days offloaded and never compacted (a new deployment's first night), and a steady
    one after that, when one more day was offloaded. Each job in its own process (as Dagster
    runs it): wall time, CPU seconds and the JVM's peak RSS."""
    from cold_assets.maintenance.operations import file_stats
    from cold_assets.maintenance.spark import require_spark

    require_spark(Settings.from_env())  # before the week of offload it measures on
    from cold_assets.partitions import partition_key_of
    from cold_assets.tables import TABLES

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days + 1)  # closed days only: the last one is the steady night's
    keys = [partition_key_of(start + timedelta(hours=h)) for h in range(24 * (days + 1))]
    first_keys, last_day_keys = keys[: 24 * days], keys[24 * days :]
    setup_s = None
    with _maintenance_state(parent, state) as (settings, build):
        if build:
            built = time.perf_counter()
            build_bench_warm(settings, DEMO_TRADES_PER_HOUR, 24 * (days + 1), bronze_only=False, start=start)
            _offload_loop(settings, first_keys)
            setup_s = round(time.perf_counter() - built, 1)
            if state is not None:
                # The catalog's recent commits sit in SQLite's write-ahead log: fold them into
                # the database file first, or the saved catalog points at old metadata.
                with sqlite3.connect(settings.home / "catalog.db") as connection:
                    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                subprocess.run(["tar", "-cf", "state.tar", "warehouse", "catalog.db"], cwd=settings.home, check=True)
        catalog = IcebergResource.from_settings(settings).catalog()
        before = {t.cold: file_stats(catalog.load_table(t.cold_identifier), t) for t in TABLES}
        runs = _nightly_runs(settings, lookback_days=days + 1)
        after = {t.cold: file_stats(catalog.load_table(t.cold_identifier), t) for t in TABLES}
        _offload_loop(settings, last_day_keys)
        steady_runs = _nightly_runs(settings, lookback_days=7)  # the schedule's default
        steady = {t.cold: file_stats(catalog.load_table(t.cold_identifier), t) for t in TABLES}
    big = 512 * 1024 * 1024

    def totals(of: dict) -> dict:
        return {
            "wall_s": round(sum(r["wall_s"] for r in of.values()), 2),
            "cpu_s": round(sum(r["cpu_s"]["python"] + r["cpu_s"]["jvm"] for r in of.values()), 1),
        }

    return {
        "benchmark": "maintenance",
        "days": days,
        "trades_per_hour": DEMO_TRADES_PER_HOUR,
        "setup_s": setup_s,  # None: restored from --state
        "runs": runs,
        **totals(runs),
        "steady_night": {"days_offloaded_since": 1, "runs": steady_runs, **totals(steady_runs)},
        "jvm_peak_rss_mb": round(max(r["jvm_peak_rss_mb"] for r in [*runs.values(), *steady_runs.values()])),
        "tables": {
            name: {
                "data_files": [before[name].data_files, after[name].data_files, steady[name].data_files],
                "bytes": [before[name].bytes, after[name].bytes, steady[name].bytes],
                "partitions": steady[name].partitions,
                "max_files_per_partition": [before[name].max_files_per_partition, after[name].max_files_per_partition],
                "rows_unchanged": before[name].rows == after[name].rows,
            }
            for name in before
        },
        "max_files_per_partition_under_512mb": max(
            a.max_files_per_partition for a in after.values() if a.bytes / max(a.partitions, 1) < big
        ),
        "targets": {"wall_s": "< 90", "jvm_peak_rss_mb": "< 1024", "max_files_per_partition_under_512mb": 1},
    }


def _view_against_warm(
    client: Client, template: str, view: str, warm: str, parameters: dict, repeats: int, failure: str
) -> tuple[Sequence[Sequence], dict]:
    """The query `template` over `view` and over `warm`, interleaved `repeats` times (drift
    hits both): the view's answer, which must equal warm's, and the medians."""
    from cold_assets.warm.read import render

    timings: dict[str, list[float]] = {"view": [], "warm_only": []}
    answers = {}
    for _ in range(repeats):
        for side, source in (("view", view), ("warm_only", warm)):
            sql = render(template, source=source)
            started = time.perf_counter()
            answers[side] = client.query(sql, parameters=parameters).result_rows
            timings[side].append(time.perf_counter() - started)
    if answers["view"] != answers["warm_only"]:
        raise RuntimeError(failure)
    view_s, warm_s = statistics.median(timings["view"]), statistics.median(timings["warm_only"])
    return answers["view"], {
        "view_ms": round(view_s * 1000, 1),
        "warm_only_ms": round(warm_s * 1000, 1),
        "view_over_warm": round(view_s / warm_s, 2),
    }


def ohlcv_latency(client: Client, table: Table, spec: MirroredTable, ranges: dict, repeats: int, what: str) -> dict:
    """Per named range: the OHLCV query through the federated view of `spec` and on the warm
    read alone, interleaved `repeats` times (drift hits both), medians, and the same answer."""
    from cold_assets.parity.checksums import local_file_access

    figures = {}
    with local_file_access(table):
        for name, (lo, hi) in ranges.items():
            warm_only = f"({read_query(spec, None, lo, hi, literal=True).sql})"
            bars, timings = _view_against_warm(
                client, "bench_ohlcv", f"{spec.warm}_all", warm_only, {"range_start": lo, "range_end": hi}, repeats,
                f"{what}: the view and warm disagree over {name}",
            )
            figures[name] = {"days": round((hi - lo) / timedelta(days=1), 2), "hourly_bars": len(bars), **timings}
    return figures


def recent_trades_latency(client: Client, since: datetime, repeats: int, what: str) -> dict:
    """The recent-trades query since `since` through silver_trades_all and on silver read
    FINAL alone, interleaved `repeats` times, medians, and the same answer. Both read warm
    FINAL; the view's read is pruned to the key blocks of its hours (sql/final_key_blocks.sql)."""
    instruments, timings = _view_against_warm(
        client, "bench_recent_trades", "silver_trades_all", "silver_trades FINAL", {"range_start": since}, repeats,
        f"{what}: the view and warm disagree on the trades since {since.isoformat()}",
    )
    return {"since": since.isoformat(), "trades": sum(row[2] for row in instruments), **timings}


def bench_federation(days: int = 28, trades_per_hour: int = 2_000, repeats: int = 5, parent: str | None = None) -> dict:
    """Latency of a one-day and a one-month OHLCV query through the federated view of the
    1-minute bars against the same query on the warm tier alone, in the same run. A month
    is 28 days here: the warm tier's 30-day TTL is already dropping the hours beyond, and
    the cutover (rightly) stops at the first hour that no longer matches. Beside it, the
    trades since the silver view's cutover, through silver_trades_all and on silver FINAL alone."""
    from cold_assets.federation import federate
    from cold_assets.offload.protocol import offload_partitions
    from cold_assets.parity.checksums import local_file_access

    spec, silver = table_by_cold_name("gold_ohlcv_1m"), table_by_cold_name("silver_trades")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days)
    with bench_settings(parent) as settings:
        build_bench_warm(settings, trades_per_hour, 24 * days, bronze_only=False, start=start)
        catalog = IcebergResource.from_settings(settings).catalog()
        with ClickHouseResource.from_settings(settings).connect() as client:
            keys = [partition_key_of(start + timedelta(hours=h)) for h in range(24 * days)]
            # Silver's cutover trails by a day, as the daily audit leaves it: its view reads that day from warm.
            cold = {t.cold: catalog.load_table(t.cold_identifier) for t in (spec, silver)}
            for mirrored, offloaded in ((spec, keys), (silver, keys[:-24])):
                for _ in offload_partitions(client, cold[mirrored.cold], mirrored, offloaded, "bench", settle_lag=timedelta(0)):
                    pass
            federation, silver_federation = federate(client, catalog, tables=[spec, silver])
            ranges = {"one_day": (today - timedelta(days=1), today), "one_month": (start, today)}
            figures = ohlcv_latency(client, cold[spec.cold], spec, ranges, repeats, "bench federation")
            with local_file_access(cold[silver.cold]):
                recent = recent_trades_latency(client, silver_federation.cutover, repeats, "bench federation")
    return {
        "benchmark": "federation",
        "table": f"{spec.warm}_all",
        "days": days,
        "trades_per_hour": trades_per_hour,
        "cutover": federation.cutover.isoformat(),
        "repeats": repeats,
        **figures,
        "silver_trades_all_since_cutover": recent,
    }
