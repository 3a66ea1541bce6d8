"""`cold-assets bench`: the figures the issues ask for, measured in one run on throwaway state.

Each benchmark works in a fresh temporary COLD_HOME (or --home) so that it measures the
product's own code path on known data and leaves the user's state alone.
"""

import json
import resource
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from cold_assets.resources import ClickHouseResource
from cold_assets.settings import Settings
from cold_assets.simulate import FeedConfig, simulate
from cold_assets.warm_ddl import apply_warm_ddl

BENCH_START = datetime(2026, 11, 20, tzinfo=timezone.utc)


@contextmanager
def bench_settings(home: str | None) -> Iterator[Settings]:
    with tempfile.TemporaryDirectory(prefix="cold-bench-", dir=home) as tmp:
        base = Settings.from_env()
        yield Settings(**{**base.__dict__, "home": Path(tmp), "clickhouse_host": None})


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_feed(trades: int, home: str | None = None) -> dict:
    """Simulated trades into embedded chDB, through the whole materialized-view chain."""
    with bench_settings(home) as settings:
        warm = ClickHouseResource.from_settings(settings)
        with warm.connect() as client:
            apply_warm_ddl(client)
            cfg = FeedConfig(start=BENCH_START, hours=1, trades_per_hour=trades)
            started = time.perf_counter()
            written = simulate(client, cfg)
            seconds = time.perf_counter() - started
    return {
        "benchmark": "feed",
        "messages": written,
        "seconds": round(seconds, 2),
        "messages_per_s": round(written / seconds),
        "peak_rss_mb": round(peak_rss_mb()),
        "target": "5,000,000 trades in under 60 s",
    }


def print_json(result: dict) -> None:
    print(json.dumps(result, indent=2))
