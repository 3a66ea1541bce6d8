"""`cold-assets bench sensors`: the parity sensors' ticks (self_healing, ttl_guard) after `days`
days at `trades_per_hour`, with the production settle lag.

The history is built once (`--state DIR` keeps it for the next run): the medallion fed
through its materialized views, and each cold table filled from the offload's own warm reads,
a checkpoint a day (a file per hour and exchange). The sensors then
tick as Dagster's daemon runs them (`build_sensor_context`), each several times (the median
is printed), and once more with cold's counts read from the data files instead of the
manifests: the baseline of the same run.
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
            for _ in range(repeats):
                context = build_sensor_context(instance=instance, resources=resources, definitions=defs)
                started = time.perf_counter()
                sensor(context)
                seconds.setdefault(name, []).append(round(time.perf_counter() - started, 2))
    return seconds


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
        # The baseline: cold's counts read by ClickHouse from every data file, as before the
        # manifests answered them.
        with mock.patch("cold_assets.parity.checksums.counts_by_hour", lambda t, s, buckets, *a, **k: ({}, set(buckets))):
            baseline = _ticks(settings, 1)
    return {
        "benchmark": "sensors",
        "days": days,
        "trades_per_hour": trades_per_hour,
        "build": build,
        "tick_s": {name: statistics.median(s) for name, s in ticks.items()},
        "tick_s_each": ticks,
        "baseline_cold_counts_from_data_files_s": {name: s[0] for name, s in baseline.items()},
        "peak_rss_mb": round(peak_rss_mb()),
        "target": "each sensor's tick at most 15 s at 200,000 trades/h after 30 days (Dagster's limit: 60 s)",
    }
