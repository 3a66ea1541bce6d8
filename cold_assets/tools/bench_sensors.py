"""`cold-assets bench sensors`: the parity sensors' ticks (self_healing, ttl_guard) after `days`
days at `trades_per_hour`, with the production settle lag.

The history is built once (`--state DIR` keeps it for the next run): the medallion fed
through its materialized views, and each cold table filled from the offload's own warm reads,
a checkpoint a day (a file per hour and exchange). The sensors then tick as Dagster's daemon
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

from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.partitions import partition_key_of
from cold_assets.settings import Settings, throwaway
from cold_assets.tables import TABLES
from cold_assets.tools.bench import build_bench_warm, peak_rss_mb
from cold_assets.tools.bench_history import history_window

PRODUCTION_TRADES_PER_HOUR = 200_000
BUILT = "sensors-bench.json"  # the marker of a finished build under --state
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
                context = build_sensor_context(instance=instance, resources=resources, definitions=defs, cursor=cursor)
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


def bench_sensors(days: int = 30, trades_per_hour: int = PRODUCTION_TRADES_PER_HOUR, parent: str | None = None,
                  state: str | None = None) -> dict:
    with _state(parent, state) as home:
        settings = throwaway(Settings.from_env(), home)  # the production settle lag: the bench's own is 0
        marker = home / BUILT
        build = None
        if marker.exists():
            build = json.loads(marker.read_text())
            if build["days"] != days or build["trades_per_hour"] != trades_per_hour:
                raise SystemExit(f"--state {home} holds {build['days']} days at {build['trades_per_hour']} trades/h; "
                                 "use another folder for other figures")
        else:
            start, end = history_window(days)
            started = time.perf_counter()
            build_bench_warm(settings, trades_per_hour, int((end - start) / timedelta(hours=1)), False, start=start)
            warm_s = time.perf_counter() - started
            started = time.perf_counter()
            cold_rows = _fill_cold(settings, start, end)
            build = {
                "days": days, "trades_per_hour": trades_per_hour, "start": start.isoformat(), "end": end.isoformat(),
                "warm_build_s": round(warm_s), "cold_fill_s": round(time.perf_counter() - started), "cold_rows": cold_rows,
            }
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
