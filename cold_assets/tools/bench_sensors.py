"""`cold-assets bench sensors`: the parity sensors' ticks (self_healing, ttl_guard) after `days`
days at `trades_per_hour`, with the production settle lag.

The history is built once (`--state DIR` keeps it for the next run): the medallion fed
through its materialized views, and each cold table filled from the offload's own warm reads,
a checkpoint a day (a file per hour and exchange). The build takes hours at production
volume, so a build stopped midway resumes: its plan is written first, and the next run feeds
on from the hour after warm's newest trade, up to the current hour. The sensors then tick as Dagster's daemon
runs them (`build_sensor_context`; on the embedded tier their look at warm runs in a child
process, warm/isolated.py), each several times (the median is printed). Their looks at warm
are then timed in this process, once with cold's counts from the manifests and once read
from the data files: the baseline of the same run (a child would not see the switch).
"""

import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock

from cold_assets.cold.ddl import ensure_cold_tables
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.partitions import partition_key_of
from cold_assets.settings import Settings, throwaway
from cold_assets.tables import TABLES
from cold_assets.tools.bench import build_bench_warm, peak_rss_mb
from cold_assets.tools.bench_history import history_window

PRODUCTION_TRADES_PER_HOUR = 200_000
BUILT = "sensors-bench.json"  # the marker of a finished build under --state
PLAN = "sensors-bench-plan.json"  # a build under way: its figures and first hour
HOUR = timedelta(hours=1)
REPEATS = 3


@contextmanager
def _state(parent: str | None, state: str | None) -> Iterator[Path]:
    if state is not None:
        home = Path(state).resolve()
        home.mkdir(parents=True, exist_ok=True)
        yield home
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cold-bench-sensors-", dir=parent) as tmp:
        yield Path(tmp)


def _fill_cold(settings: Settings, start: datetime, end: datetime) -> dict[str, int]:
    """Each cold table offloaded by the protocol itself (no Dagster run: its event log is not
    what this measures), a checkpoint a day, with no settle lag: the history is whole."""
    from cold_assets.offload.protocol import offload_partitions

    catalog = IcebergResource.from_settings(settings).catalog()
    keys = [partition_key_of(start + timedelta(hours=h)) for h in range(int((end - start) / timedelta(hours=1)))]
    rows: dict[str, int] = {}
    with ClickHouseResource.from_settings(settings).connect() as client:
        for spec in TABLES:
            table = catalog.load_table(spec.cold_identifier)
            checkpoints = offload_partitions(client, table, spec, keys, "bench-sensors-history", settle_lag=timedelta(0))
            rows[spec.cold] = sum(r.rows_written for c in checkpoints for r in c.results)
    return rows


def _ticks(settings: Settings, repeats: int) -> dict[str, list[float]]:
    from dagster import DagsterInstance, build_sensor_context

    from cold_assets.definitions import build_definitions

    defs = build_definitions(settings)
    resources = {key: (defs.resources or {})[key] for key in ("clickhouse", "iceberg")}
    seconds: dict[str, list[float]] = {}
    with DagsterInstance.ephemeral() as instance:
        for name in ("self_healing", "ttl_guard"):
            sensor = defs.resolve_sensor_def(name)
            cursor = None  # carried from tick to tick, as the daemon does
            for _ in range(repeats):
                with build_sensor_context(instance=instance, resources=resources, definitions=defs, cursor=cursor) as context:
                    started = time.perf_counter()
                    sensor(context)
                    cursor = context.cursor
                    seconds.setdefault(name, []).append(round(time.perf_counter() - started, 2))
    return seconds


def _looks(settings: Settings, counts_from_files: bool) -> tuple[dict[str, float], int]:
    """Each sensor's look at warm, timed in this process (the TTL guard's from an empty cursor:
    every hour near the TTL proven, as on its first tick), and how many (table, hour) counts
    of cold the manifests answered."""
    from cold_assets.defs.healing import late_rows_in_lookback
    from cold_assets.defs.ttl_guard import look_at_old_hours
    from cold_assets.hours import HourPolicy
    from cold_assets.parity import checksums
    from cold_assets.partitions import hourly_partitions

    real = checksums.counts_by_hour
    answered = [0]

    def counted(table, spec, buckets, *args, **kwargs):  # type: ignore[no-untyped-def]
        if counts_from_files:
            return {}, set(buckets)
        known, unknown = real(table, spec, buckets, *args, **kwargs)
        answered[0] += len(known)
        return known, unknown

    clickhouse, iceberg = ClickHouseResource.from_settings(settings), IcebergResource.from_settings(settings)
    partitions_def, policy = hourly_partitions(settings), HourPolicy.from_settings(settings)
    lookback = timedelta(days=settings.heal_lookback_days)
    retention, margin = timedelta(days=settings.warm_retention_days), timedelta(days=settings.ttl_margin_days)
    cutover_alert = timedelta(hours=settings.cutover_alert_hours)
    seconds: dict[str, float] = {}
    with mock.patch.object(checksums, "counts_by_hour", counted):
        started = time.perf_counter()
        late_rows_in_lookback(clickhouse, iceberg, partitions_def, lookback, policy)
        seconds["self_healing"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        look_at_old_hours(clickhouse, iceberg, partitions_def, {}, retention, lookback, margin, cutover_alert, policy)
        seconds["ttl_guard"] = round(time.perf_counter() - started, 2)
    return seconds, answered[0]


def _same_figures(recorded: dict, days: int, trades_per_hour: int, home: Path) -> dict:
    if recorded["days"] != days or recorded["trades_per_hour"] != trades_per_hour:
        raise ValueError(f"--state {home} holds {recorded['days']} days at {recorded['trades_per_hour']} trades/h; "
                         "use another folder for other figures")
    return recorded


def _hours_fed(settings: Settings, start: datetime) -> tuple[int, int]:
    """Hours from `start` through the one holding the newest trade warm holds, and how many raw
    messages that last hour holds: a build stopped inside an insert leaves it thin. (Not the
    newest receipt: the feed's last hour delivers the late messages it still holds, hours
    after their trades.)"""
    with ClickHouseResource.from_settings(settings).connect() as client:
        newest = client.query("SELECT max(exchange_ts) FROM trades_raw").result_rows[0][0]
        if newest.timestamp() <= start.timestamp():  # empty: max() of no rows is the epoch
            return 0, 0
        last_hour = newest.replace(minute=0, second=0, microsecond=0, tzinfo=start.tzinfo)
        thin = client.query(
            "SELECT count() FROM trades_raw WHERE exchange_ts >= {h:DateTime64(6, 'UTC')} "
            "AND exchange_ts < {h:DateTime64(6, 'UTC')} + INTERVAL 1 HOUR",
            parameters={"h": last_hour},
        ).result_rows[0][0]
    return int((last_hour - start) / HOUR) + 1, int(thin)


def _build(settings: Settings, home: Path, days: int, trades_per_hour: int) -> dict:
    plan_file = home / PLAN
    resumed: dict | None = None
    if plan_file.exists():
        plan = _same_figures(json.loads(plan_file.read_text()), days, trades_per_hour, home)
        start = datetime.fromisoformat(plan["start"])
        fed, last_hour_rows = _hours_fed(settings, start)
        resumed = {"after_hours": fed, "last_hour_raw_rows": last_hour_rows}
    else:
        start, fed = history_window(days)[0], 0
        plan_file.write_text(json.dumps({"days": days, "trades_per_hour": trades_per_hour, "start": start.isoformat()}))
    # Up to the current hour: a resumed history that ended hours ago would leave the sensors'
    # newest hours empty.
    end = history_window(days)[1]
    started = time.perf_counter()
    if start + fed * HOUR < end:
        build_bench_warm(settings, trades_per_hour, int((end - start) / HOUR) - fed, False, start=start + fed * HOUR,
                         hours_before=fed)
    warm_s = time.perf_counter() - started
    ensure_cold_tables(IcebergResource.from_settings(settings).catalog())  # a build stopped before it made them
    started = time.perf_counter()
    # Rows this fill wrote: the hours a stopped build filled come back unchanged.
    cold_rows = _fill_cold(settings, start, end)
    return {
        "days": days, "trades_per_hour": trades_per_hour, "start": start.isoformat(), "end": end.isoformat(),
        "resumed": resumed, "warm_build_s": round(warm_s), "cold_fill_s": round(time.perf_counter() - started),
        "cold_rows_written": cold_rows,
    }


def bench_sensors(days: int = 30, trades_per_hour: int = PRODUCTION_TRADES_PER_HOUR, parent: str | None = None,
                  state: str | None = None) -> dict:
    with _state(parent, state) as home:
        settings = throwaway(Settings.from_env(), home)  # the production settle lag: the bench's own is 0
        marker = home / BUILT
        if marker.exists():
            build = _same_figures(json.loads(marker.read_text()), days, trades_per_hour, home)
        else:
            build = _build(settings, home, days, trades_per_hour)
            marker.write_text(json.dumps(build))
        ticks = _ticks(settings, REPEATS)
        _looks(settings, counts_from_files=False)  # unmeasured: the first open and the caches are neither's
        looks, from_manifests = _looks(settings, counts_from_files=False)
        # The baseline: cold's counts read by ClickHouse from every data file, as before the
        # manifests answered them.
        baseline, from_manifests_in_baseline = _looks(settings, counts_from_files=True)
    return {
        "benchmark": "sensors",
        "days": days,
        "trades_per_hour": trades_per_hour,
        "build": build,
        "tick_s": {name: statistics.median(s) for name, s in ticks.items()},
        "tick_s_each": ticks,
        "look_s": looks,
        "baseline_look_cold_counts_from_data_files_s": baseline,
        "cold_hours_counted_from_manifests": {"look": from_manifests, "baseline": from_manifests_in_baseline},
        "peak_rss_mb": round(peak_rss_mb()),
        "target": "each sensor's tick at most 15 s at 200,000 trades/h after 30 days (Dagster's limit: 60 s)",
    }
