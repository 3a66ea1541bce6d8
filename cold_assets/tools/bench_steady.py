"""`cold-assets bench steady`: the 15-minute tick on day one and after a month (issue 24).

On throwaway state, with the production settle lag, at demo volume (or `--trades-per-hour`;
`--history-trades-per-hour` feeds the month before its last day at another rate, so that a
tick at 10 x runs after a month without the whole month fed at 10 x). Warm is fed as if live:
each message ingested when it was received.

1. day one: warm holds the month's last day, backfilled through the offload job, audited
   as the nightly audit does (which makes the `_all` views every tick then follows), then
   `sample` ticks on its last hours;
2. a month of history: warm's days before it fed, backfilled through the same job, as the
   UI's backfill would run it, so that the event log holds a month of the product's own
   events; last night's compaction (`compact_cold`: every table's manifests rewritten,
   yesterday's partitions compacted), as production runs it every night, in a run process
   of its own, and last night's daily audit (its verdicts are what the metrics exporter
   reads); then the day's commits up to its last ticks (kept_week_of_commits: the
   snapshots the nightly expiry keeps of a week, less the ticks' own);
3. a day of ticks over that last day again: `ticks` (96) runs of the schedule's request, the
   ticked hours moving on one hour every four ticks.

Both phases tick the same recent hours (a trade a month late would be refused by the feed),
so the two differ by the history behind them. Each tick feeds 300 late trades with new trade
ids into its current hour first, settled by the tick, so that all nine tables change.

Each tick is the schedule's run (previous and current hour, every table, checks included),
run in this process as the embedded instance's run worker would. The first and the last
tick of each phase run under cProfile, and the bench prints their parts (the warm tier's
opens and queries, event-log reads and writes, parity, cold planning, commits). The sensors
tick every fourth tick, their cursors carried. At the end of each phase: the embedded warm
tier's parts (active and outdated) per table, the snapshots and manifests per table, scrapes
of the metrics exporter (metrics_scrape, issue 26), one cold read by ClickHouse given its own
metadata file and the catalog's (cold_read_ms), and a person's materialization of one hour
from the webserver (webserver_materialization).

`--dagster-postgres` keeps the instance on PostgreSQL; `--profile-dir` keeps the profiled
ticks' and sensors' stats.
"""

import cProfile
import gc
import json
import os
import pstats
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.partitions import partition_key_of
from cold_assets.settings import Settings, throwaway_env
from cold_assets.tables import TABLES
from cold_assets.tools.bench import DEMO_TRADES_PER_HOUR, bench_settings, build_bench_warm, child_json, maintenance_child_run
from cold_assets.tools.bench_history import backfill_runs, metadata_facts, sensor_tick_seconds
from cold_assets.tools.webserver import ROOT, launch_materialization, launching_at_once, running_webserver, wait_for_run
from cold_assets.warm.ddl import WarmLimits

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from dagster import DagsterInstance

LATE_TRADES_PER_TICK = 300
TICKS_PER_HOUR = 4
# What a tick spends, by the functions that do it: (name, where the function lives, function).
TICK_PARTS = [
    ("warm_open", "cold_assets/warm/embedded_lock.py", "_open"),
    ("warm_queries", "chdb_backend.py", "_query_locked"),
    ("warm_streams", "chdb_backend.py", "_open_stream"),
    ("event_log_reads", "dagster/_core/instance", "fetch_materializations"),
    ("event_log_writes", "dagster/_core/storage/event_log", "store_event"),
    ("event_log_writes", "dagster_postgres/event_log", "store_event"),  # --dagster-postgres
    ("parity", "cold_assets/parity/checksums.py", "partitions_parity"),
    ("cold_planning", "pyiceberg/table/__init__.py", "plan_files"),
    ("commits", "cold_assets/offload/commit.py", "commit_transaction"),
]
TARGET_RATIO = 1.25
WALL_BUDGET_S = 15 * 60  # issue 24: the bench takes about 15 minutes at most
METRICS_SCRAPE_TARGET_S = 1.0  # issue 26: a scrape of the exporter on 30 days of history (and each reading behind it)
# What the nightly expiry keeps of a week of 15-minute commits (docs/maintenance.md): the
# last day's 97, and the last of each of the 7 days before (compactions keep a few more).
KEPT_SNAPSHOTS = 97 + 7


def tick_parts(profile: cProfile.Profile) -> dict[str, float]:
    """Cumulative seconds of each TICK_PARTS function in a profiled tick."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]  # pstats keeps its table there
    parts = dict.fromkeys((name for name, _, _ in TICK_PARTS), 0.0)
    for (filename, _, function), (_, _, _, cumulative, _) in stats.items():
        for name, where, wanted in TICK_PARTS:
            if function == wanted and where in filename:
                parts[name] += cumulative
    return {name: round(seconds, 3) for name, seconds in parts.items()}


@contextmanager
def garbage_collections() -> Iterator[list[float]]:
    """While open, the seconds each of Python's cyclic garbage collections took (gc.callbacks):
    a pause that lands in whatever code allocates, and grows with the objects the process holds
    (the bench's child holds a month of runs; a run worker, only its own)."""
    took: list[float] = []
    started: list[float] = []

    def note(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            took.append(time.perf_counter() - started.pop())

    gc.callbacks.append(note)
    try:
        yield took
    finally:
        gc.callbacks.remove(note)


def _late_trades(client: "Client", hour: datetime, first_trade_id: int, count: int = LATE_TRADES_PER_TICK,
                 settle_lag_seconds: int = 0) -> None:
    """`count` late trades into `hour`, ingested `settle_lag_seconds` + 1 s ago: the ticks run
    seconds apart, where production's 15 minutes leave what came between two ticks settled by
    the next, so that the append layers commit every tick, as they do there."""
    ingested = datetime.now(UTC) - timedelta(seconds=settle_lag_seconds + 1)
    columns = ["exchange", "symbol", "trade_id", "price", "quantity", "side", "exchange_ts", "received_at", "message", "ingested_at"]
    rows = [
        ["binance", "BTCUSDT", str(first_trade_id + i), "91000.00000000", "0.01000000", "false",
         hour + timedelta(minutes=7, microseconds=i), hour + timedelta(minutes=7, microseconds=i), "{}", ingested]
        for i in range(count)
    ]
    client.insert("trades_raw", rows, column_names=columns)


def kept_week_of_commits(settings: Settings, hour: datetime, rounds: int, first_trade_id: int) -> dict:
    """The snapshots the nightly expiry keeps of a week (every commit of the last day, the
    last of each day before: about 104 a table), made by the offload's own protocol: `rounds`
    times, 30 late trades into `hour` and every table's offload of it, with no settle lag so
    that the append layers commit every round too (trades_rejects takes none). `hour` is one
    the ticks do not read. Left out: Dagster (it records no snapshot), and the expiry, whose
    thinning goes by days where these commits are seconds apart
    (cold_assets_tests/unit/test_retention.py). These snapshots stay on the ancestry, where
    production's daily ones are behind the cut, and the month's history commits stay too: the
    ticks walk more snapshots than production's would."""
    from cold_assets.offload.protocol import offload_partitions

    started = time.perf_counter()
    catalog = IcebergResource.from_settings(settings).catalog()
    key = partition_key_of(hour)
    with ClickHouseResource.from_settings(settings).connect() as client:
        for i in range(rounds):
            _late_trades(client, hour, first_trade_id + 30 * i, count=30)
            for spec in TABLES:
                table = catalog.load_table(spec.cold_identifier)
                for _ in offload_partitions(client, table, spec, [key], f"bench-steady-week-{i}", settle_lag=timedelta(0)):
                    pass
    return {
        "rounds": rounds,
        "seconds": round(time.perf_counter() - started, 1),
        "snapshots_after": {spec.cold: len(catalog.load_table(spec.cold_identifier).snapshots()) for spec in TABLES},
    }


def _warm_parts(settings: Settings) -> dict[str, dict[str, int]]:
    with ClickHouseResource.from_settings(settings).connect() as client:
        rows = client.query(
            "SELECT table, countIf(active), countIf(NOT active) FROM system.parts "
            "WHERE database = currentDatabase() GROUP BY table ORDER BY table"
        ).result_rows
    return {str(table): {"active": int(active), "outdated": int(outdated)} for table, active, outdated in rows}


def _cold_shape(settings: Settings) -> dict[str, dict]:
    catalog = IcebergResource.from_settings(settings).catalog()
    return {spec.cold: metadata_facts(catalog.load_table(spec.cold_identifier)) for spec in TABLES}


def _instance(settings: Settings, dagster_postgres: bool) -> "DagsterInstance":
    """The embedded default's instance (SQLite), or production's (docker/dagster.yaml) on the
    PostgreSQL database DAGSTER_POSTGRES_URL names, which must hold no run yet: the bench
    writes a month of runs into it."""
    from dagster import DagsterInstance

    from cold_assets.tools.instance import embedded_instance

    if not dagster_postgres:
        return embedded_instance(settings)
    production = ROOT / "docker" / "dagster.yaml"
    if not os.environ.get("DAGSTER_POSTGRES_URL"):
        raise ValueError("bench steady --dagster-postgres: set DAGSTER_POSTGRES_URL to an empty, throwaway database")
    if not production.exists():
        raise ValueError(f"bench steady --dagster-postgres reads the production instance file {production}: run it from a clone")
    home = settings.home / "dagster-postgres"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(production, home / "dagster.yaml")
    instance = DagsterInstance.from_config(str(home))
    if instance.get_runs_count() > 0:
        raise ValueError(
            f"bench steady --dagster-postgres: the database DAGSTER_POSTGRES_URL names already holds "
            f"{instance.get_runs_count()} runs; give it an empty, throwaway one"
        )
    return instance


def steady_child(start: str, days: int, ticks: int, sample: int, dagster_postgres: bool, profile_dir: str | None,
                 history_trades_per_hour: int, ingested_from: str) -> None:
    """Runs in a child process with the throwaway environment, warm holding the month's last
    day; prints one JSON line."""
    from dagster import build_schedule_context

    from cold_assets.definitions import build_definitions
    from cold_assets.defs.nightly import COMPACTION_JOB, DAILY_AUDIT_JOB
    from cold_assets.defs.schedules import OFFLOAD_JOB

    settings = Settings.from_env()
    defs = build_definitions(settings)
    job = defs.resolve_job_def(OFFLOAD_JOB)
    schedule = defs.resolve_schedule_def("offload_every_15_minutes")
    instance = _instance(settings, dagster_postgres)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    first = datetime.fromisoformat(start)
    keys = [partition_key_of(first + timedelta(hours=h)) for h in range(24 * days)]
    next_trade_id = 9_000_000_000

    def backfill(chunk_keys: list[str]) -> float:
        started = time.perf_counter()
        for chunk in backfill_runs(chunk_keys):
            tags = {"dagster/asset_partition_range_start": chunk[0], "dagster/asset_partition_range_end": chunk[-1]}
            if not job.execute_in_process(instance=instance, tags=tags, run_config=quiet, raise_on_error=False).success:
                raise RuntimeError(f"bench steady: backfill run {chunk[0]}..{chunk[-1]} failed")
        return round(time.perf_counter() - started, 1)

    def late_trades(hour: datetime) -> None:
        """A tick's late trades into `hour`, with new trade ids, settled by the tick."""
        nonlocal next_trade_id
        with ClickHouseResource.from_settings(settings).connect() as client:
            _late_trades(client, hour, next_trade_id, settle_lag_seconds=settings.settle_lag_seconds)
        next_trade_id += LATE_TRADES_PER_TICK

    def tick(at: datetime, profiled: str | None) -> tuple[float, float, float, dict[str, float] | None]:
        """One schedule tick at `at`: late trades into its current hour, then its run; under
        cProfile if `profiled` names it (kept in profile_dir as <name>.pstats, if given). Its
        wall seconds, the CPU seconds of this process meanwhile (every thread's: chDB runs in
        it), which a busy shared host inflates less than wall time, and the seconds Python's
        garbage collector paused it."""
        late_trades(at.replace(minute=0, second=0, microsecond=0))
        context = build_schedule_context(instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def())
        (request,) = schedule.evaluate_tick(context).run_requests or []
        profile = cProfile.Profile() if profiled else None
        run = partial(job.execute_in_process, instance=instance, tags=dict(request.tags or {}), run_config=quiet, raise_on_error=False)
        with garbage_collections() as collections:
            started, cpu_started = time.perf_counter(), time.process_time()
            result = profile.runcall(run) if profile else run()
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        if not result.success:
            raise RuntimeError(f"bench steady: the tick at {at.isoformat()} failed")
        if profile is None:
            return seconds, cpu, sum(collections), None
        if profile_dir:
            profile.dump_stats(str(Path(profile_dir) / f"{profiled}.pstats"))
        return seconds, cpu, sum(collections), tick_parts(profile)

    # The sensors carry their cursors from tick to tick, as the daemon does.
    sensor_cursors: dict[str, str | None] = {}

    def day_of_ticks(phase: str, first_tick: datetime, count: int) -> dict:
        """`count` schedule ticks, and the sensors' every fourth (the TTL guard ticks hourly;
        self-healing, every 5 minutes, would tick every time: once an hour it sees four
        ticks' changes). Before them, one sensor tick untimed: it catches up on what the
        daemon would have followed meanwhile (the backfill's runs and check results, and
        Dagster's partition status cache, which takes in every materialization since it was
        last read)."""
        sensor_tick_seconds(defs, instance, cursors=sensor_cursors)
        seconds, cpu_seconds, gc_seconds, profiles = [], [], [], {}
        sensors: dict[str, list[float]] = {}
        last_sensor_round = count - count % TICKS_PER_HOUR - 1
        for i in range(count):
            at = first_tick + timedelta(minutes=15 * i)
            which = "first" if i == 0 else "last" if i == count - 1 else None
            s, cpu, collecting, parts = tick(at, profiled=f"{phase}-{which}" if which else None)
            seconds.append(s)
            cpu_seconds.append(cpu)
            gc_seconds.append(collecting)
            if which and parts is not None:
                profiles[which] = {"seconds": round(s, 2), "parts": parts}
            if i % TICKS_PER_HOUR == TICKS_PER_HOUR - 1:
                profile_to = Path(profile_dir) / phase if profile_dir and i == last_sensor_round else None
                for name, took in sensor_tick_seconds(defs, instance, profile_to, sensor_cursors).items():
                    sensors.setdefault(name, []).append(took)
        return {
            "ticks": count,
            "first_5_median_s": round(statistics.median(seconds[:5]), 2),
            "last_5_median_s": round(statistics.median(seconds[-5:]), 2),
            "all_s": [round(s, 2) for s in seconds],
            "all_cpu_s": [round(s, 2) for s in cpu_seconds],
            "all_gc_s": [round(s, 3) for s in gc_seconds],
            "python_objects": len(gc.get_objects()),
            "profiled": profiles,
            "sensors_s": {name: round(statistics.median(took), 2) for name, took in sensors.items()},
            "sensors_all_s": sensors,
        }

    month_end = first + timedelta(hours=len(keys))
    first_tick = month_end - timedelta(hours=-(-ticks // TICKS_PER_HOUR))
    launched_hour = month_end - timedelta(hours=1)

    def phase_state(phase: str) -> dict:
        """Warm's parts and cold's shape at the end of a phase, and a person's materialization
        from the webserver of an hour with a tick's late trades."""
        state = {
            "warm_parts": _warm_parts(settings), "cold": _cold_shape(settings), "metrics_scrape": metrics_scrape(settings, instance),
            "cold_read": cold_read_ms(settings, launched_hour - timedelta(hours=1)),
        }
        late_trades(launched_hour)
        return state | {"webserver_materialization": webserver_materialization(settings, instance, launched_hour, phase)}

    def audit() -> dict:
        """Last night's daily audit: a week, then the `_all` views federated (every tick
        after follows its commits into them), on the instance the exporter reads."""
        started = time.perf_counter()
        result = defs.resolve_job_def(DAILY_AUDIT_JOB).execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={**quiet, "ops": {"audit_cold_tier": {"config": {"until": month_end.date().isoformat()}}}},
        )
        return {"seconds": round(time.perf_counter() - started, 1), "success": result.success}

    # Day one: warm holds the day cold-assets starts on; it is backfilled, audited (the views
    # made), then ticked.
    day_one_backfill_s = backfill(keys[-24:])
    day_one_audit = audit()
    day_one = day_of_ticks("day_one", month_end - timedelta(hours=-(-sample // TICKS_PER_HOUR)), sample)
    day_one_state = phase_state("day_one")
    # A month: warm's history before that day (as if fed live, trade ids below the day's), the
    # rest of it backfilled through the same job, last night's compaction, and the day's
    # commits up to its last ticks (the week the expiry keeps, less the ticks' own), after
    # the night's manifest rewrite as a day's are. Then a day of ticks at the month's end.
    built = time.perf_counter()
    build_bench_warm(
        settings, history_trades_per_hour, len(keys) - 24, bronze_only=False, start=first,
        ingested_from=datetime.fromisoformat(ingested_from),
    )
    history_build_s = round(time.perf_counter() - built, 1)
    month_backfill_s = backfill(keys[:-24])
    nightly_started = time.perf_counter()
    # Last night's run: every table's manifests rewritten, yesterday's partitions compacted.
    # (The month's earlier nights at once, a lookback of the month, took over 16 min here:
    # raw's every hour re-encoded at zstd 19.)
    nightly = maintenance_child_run(dict(os.environ), COMPACTION_JOB, {"lookback_days": 1})
    nightly_s = round(time.perf_counter() - nightly_started, 1)
    if not nightly["success"]:
        raise RuntimeError("bench steady: the nightly compaction failed")
    month_audit = audit()
    week_rounds = max(0, KEPT_SNAPSHOTS - ticks)
    kept_week = kept_week_of_commits(settings, first_tick - timedelta(hours=2), week_rounds, 8_000_000_000)
    month = day_of_ticks("after_month", first_tick, ticks)
    month_state = phase_state("after_month")
    print(json.dumps({
        "dagster_storage": type(instance.event_log_storage).__name__,
        "history_build_s": history_build_s,
        "backfill_s": {"day_one": day_one_backfill_s, "rest_of_month": month_backfill_s},
        "nightly_compaction_s": nightly_s,
        "daily_audit": {"day_one": day_one_audit, "after_month": month_audit},
        "kept_week": kept_week,
        "day_one": day_one | day_one_state,
        "after_month": month | month_state,
    }))


def cold_read_ms(settings: Settings, hour: datetime, reads: int = 9) -> dict:
    """One ClickHouse count of a cold table's hour (silver_trades), given the read's own
    metadata file of one snapshot (parity.checksums.cold_read), against the catalog's whole
    metadata file (parity.checksums.cold_source): medians of `reads` each, alternated in the
    same minute, so that a busy host slows both alike."""
    from cold_assets.parity.checksums import cold_read, cold_source, local_file_access
    from cold_assets.tables import table_by_cold_name

    spec = table_by_cold_name("silver_trades")
    table = IcebergResource.from_settings(settings).catalog().load_table(spec.cold_identifier)
    bounds = {"range_start": hour, "range_end": hour + timedelta(hours=1)}

    def count(client: "Client", source: str, parameters: dict) -> int:
        sql = (
            f"SELECT count() FROM {source} WHERE {spec.time_column} >= {{range_start:DateTime64(6, 'UTC')}} "
            f"AND {spec.time_column} < {{range_end:DateTime64(6, 'UTC')}}"
        )
        return int(client.query(sql, parameters={**bounds, **parameters}).result_rows[0][0])

    own, whole, counted = [], [], set()
    with ClickHouseResource.from_settings(settings).connect() as client:
        for _ in range(reads):
            started = time.perf_counter()
            with cold_read(table, client) as (source, parameters):
                counted.add(count(client, source, parameters))
            own.append(time.perf_counter() - started)
            started = time.perf_counter()
            source, parameters = cold_source(table, client)
            with local_file_access(table):
                counted.add(count(client, source, parameters))
            whole.append(time.perf_counter() - started)
    if len(counted) != 1:
        raise RuntimeError(f"bench steady: the two reads of cold silver's hour {hour:%Y-%m-%d %H:00} differ: {sorted(counted)}")
    return {
        "own_metadata_file_ms": round(statistics.median(own) * 1000, 1),
        "catalog_metadata_file_ms": round(statistics.median(whole) * 1000, 1),
        "rows": counted.pop(),
    }


def metrics_scrape(settings: Settings, instance: "DagsterInstance", readings: int = 5) -> dict:
    """The metrics exporter on the phase's instance and catalog: its readings (the first of an
    exporter just started, with its bounded first reads, then the next ones, of what is new),
    which it makes in the background, and the rendering of a scrape."""
    from prometheus_client import CollectorRegistry, generate_latest

    from cold_assets.monitoring.metrics import TierCollector
    from cold_assets.monitoring.tier_status import TierReader

    collector = TierCollector(TierReader(instance, IcebergResource.from_settings(settings).catalog(), settings))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    read, rendered = [], []
    for _ in range(readings + 1):
        started = time.perf_counter()
        collector.refresh()
        read.append(time.perf_counter() - started)
        started = time.perf_counter()
        body = generate_latest(registry)
        rendered.append(time.perf_counter() - started)
    return {
        "first_read_s": round(read[0], 3),
        "next_read_median_s": round(statistics.median(read[1:]), 3),
        "next_read_max_s": round(max(read[1:]), 3),
        "scrape_median_s": round(statistics.median(rendered), 4),
        "series": sum(1 for line in body.decode().splitlines() if line and not line.startswith("#")),
        "bytes": len(body),
    }


def webserver_materialization(settings: Settings, instance: "DagsterInstance", hour: datetime, phase: str) -> dict:
    """The first materialization a person launches from the webserver: every cold table's
    `hour`, through the GraphQL call the UI's "Materialize" makes, in a run process of its own. Timed: the launch call, the run
    from its start to its end (Dagster's run record), and launch to success as the person
    waits for it. Runs launch at once (launching_at_once): the daemon's dequeue, a poll,
    is left out."""
    work = settings.home / f"webserver-{phase}"
    home = launching_at_once(Path(instance.root_directory), work / "dagster-home")
    with running_webserver(home, dict(os.environ), work / "logs", daemon=False) as server:
        started = time.perf_counter()
        run_id = launch_materialization(server, [["cold", spec.cold] for spec in TABLES], partition_key_of(hour))
        launch_s = time.perf_counter() - started
        status = wait_for_run(server, run_id)
        total_s = time.perf_counter() - started
        if status != "SUCCESS":
            failures = [e.message for e in instance.all_logs(run_id) if e.is_dagster_event and e.get_dagster_event().is_failure]
            raise RuntimeError(
                f"bench steady: the run launched from the webserver ended {status}: {failures}\nwebserver.log ends:\n{server.log_tail()}"
            )
    record = instance.get_run_record_by_id(run_id)
    if record is None or record.start_time is None or record.end_time is None:
        raise RuntimeError(f"bench steady: Dagster recorded no start and end for run {run_id}")
    return {
        "launch_s": round(launch_s, 2),
        "run_s": round(record.end_time - record.start_time, 2),
        "launch_to_success_s": round(total_s, 2),
    }


def bench_steady(days: int = 30, ticks: int = 96, sample: int = 8, parent: str | None = None,
                 trades_per_hour: int = DEMO_TRADES_PER_HOUR, dagster_postgres: bool = False, profile_dir: str | None = None,
                 history_trades_per_hour: int | None = None) -> dict:
    if ticks < 5 or sample < 5:
        raise ValueError(f"bench steady: --ticks ({ticks}) and the day-one sample ({sample}) need at least 5 ticks each")
    if days < 2:
        raise ValueError(f"bench steady: --days ({days}) must be at least 2: day one, and a history before it")
    history_trades_per_hour = history_trades_per_hour or trades_per_hour
    if not 0 < history_trades_per_hour <= trades_per_hour:
        # The recent day's trade ids start after what its rate would have used up before it.
        raise ValueError(
            f"bench steady: --history-trades-per-hour ({history_trades_per_hour}) must be above 0 and at most "
            f"--trades-per-hour ({trades_per_hour})"
        )
    if profile_dir is not None:
        profile_dir = str(Path(profile_dir).resolve())
        if not Path(profile_dir).is_dir():
            raise ValueError(f"bench steady --profile-dir: {profile_dir} is not a directory")
    from cold_assets.maintenance.spark import require_spark

    require_spark(Settings.from_env())  # the month's nightly compaction runs on Spark
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # The month ends at the previous hour.
    start = now - timedelta(hours=24 * days)
    wall = time.perf_counter()
    with bench_settings(parent) as lagless:
        settings = replace(lagless, settle_lag_seconds=Settings.from_env().settle_lag_seconds)
        if dagster_postgres:
            _instance(settings, dagster_postgres)  # no database, or one in use: refused before the build
        built = time.perf_counter()
        # Warm as on day one: the month's last day. Each message is ingested when received, as
        # if fed live; what came in the retention's first 12 hours (the history fed later)
        # arrived as one backlog then, so that no row expires during the bench.
        history_hours = 24 * (days - 1)
        ingested_from = now - timedelta(days=WarmLimits.from_settings(settings).retention_days, hours=-12)
        build_bench_warm(
            settings, trades_per_hour, 24, bronze_only=False, start=start + timedelta(hours=history_hours), hours_before=history_hours,
            ingested_from=ingested_from,
        )
        setup_s = round(time.perf_counter() - built, 1)
        time.sleep(max(0.0, settings.settle_lag_seconds - setup_s))  # the day settled, as a real one has
        env = {
            **throwaway_env(settings.home),
            "COLD_SETTLE_LAG_SECONDS": str(settings.settle_lag_seconds),
            "COLD_PARTITIONS_START": partition_key_of(start),
            "COLD_SPARK_JARS_DIR": str(settings.spark_jars_dir),
        }
        figures = child_json(
            "from cold_assets.tools.bench_steady import steady_child; "
            f"steady_child({start.isoformat()!r}, {days}, {ticks}, {sample}, {dagster_postgres!r}, {profile_dir!r}, "
            f"{history_trades_per_hour}, {ingested_from.isoformat()!r})",
            env, "bench steady: the Dagster runs failed",
        )
    wall_s = round(time.perf_counter() - wall, 1)
    # The same scheduled times in both phases (day one's ticks, and the month's last as many),
    # so the same hours at the same point of them, the first and last of day one (profiled)
    # and their counterparts left out: what differs is the history behind.
    def same_times(field: str, average: Callable[[list[float]], float] = statistics.median) -> tuple[float, float]:
        day_one_all, month_all = figures["day_one"][field], figures["after_month"][field]
        return average(day_one_all[1:-1]), average(month_all[len(month_all) - len(day_one_all):][1:-1])

    day_one, month = same_times("all_s")
    day_one_cpu, month_cpu = same_times("all_cpu_s")
    day_one_gc, month_gc = same_times("all_gc_s", statistics.fmean)  # a full collection comes every few ticks
    before, after = figures["day_one"], figures["after_month"]
    ran_before, ran_after = before["webserver_materialization"], after["webserver_materialization"]
    launched = {f"webserver_{k}": (ran_before[k], ran_after[k]) for k in ("run_s", "launch_to_success_s")}
    pairs = {name: (before["sensors_s"][name], after["sensors_s"][name]) for name in before["sensors_s"]} | launched
    return {
        "benchmark": "steady",
        "days": days,
        "trades_per_hour": trades_per_hour,
        "history_trades_per_hour": history_trades_per_hour,
        "wall_s": wall_s,
        "wall_budget_s": WALL_BUDGET_S,
        "setup_s": setup_s,
        **figures,
        "tick_same_times_median_s": {"day_one": round(day_one, 2), "after_month": round(month, 2)},
        "tick_after_month_over_day_one": round(month / day_one, 2),
        "tick_cpu_same_times_median_s": {"day_one": round(day_one_cpu, 2), "after_month": round(month_cpu, 2)},
        "tick_cpu_after_month_over_day_one": round(month_cpu / day_one_cpu, 2),
        # Python's garbage collector within the tick: the bench's child carries every run before.
        "tick_gc_same_times_mean_s": {"day_one": round(day_one_gc, 3), "after_month": round(month_gc, 3)},
        "after_month_over_day_one": {name: round(b / max(a, 0.01), 2) for name, (a, b) in pairs.items()},
        "target": f"tick, sensors and the webserver's run after the month <= {TARGET_RATIO} x day one's",
        "metrics_scrape_after_month_s": {
            k: after["metrics_scrape"][k] for k in ("first_read_s", "next_read_median_s", "next_read_max_s", "scrape_median_s")
        },
        "metrics_scrape_target_s": METRICS_SCRAPE_TARGET_S,
    }
