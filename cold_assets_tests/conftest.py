"""Fixtures on real parts: chDB (the ClickHouse engine, through clickhouse-connect), a
SQLite Iceberg catalog with its warehouse on disk, under a per-test COLD_HOME."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from cold_assets.cold.ddl import ensure_cold_tables
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.settings import Settings
from cold_assets.warm.ddl import WarmLimits, apply_warm_ddl
from cold_assets_tests.support.offload_helpers import PARTITIONS_START

REPO = Path(__file__).resolve().parents[1]



def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first (their `runs_for` marks), the rest in their order. xdist's
    worksteal scheduling gives each worker a contiguous half and lets an idle one take from
    the end of the other's: with the long tests at the front, the ends are short tests, and
    the workers finish together (a long test last, the webserver's, left one idle for 90 s)."""

    def seconds(item: pytest.Item) -> float:
        mark = item.get_closest_marker("runs_for")
        return float(mark.args[0]) if mark else 0.0

    items.sort(key=seconds, reverse=True)  # stable

@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("COLD_HOME", str(tmp_path / "cold"))
    # Tests insert and offload within milliseconds; production keeps the 30 s default.
    monkeypatch.setenv("COLD_SETTLE_LAG_SECONDS", "0")
    monkeypatch.setenv("COLD_PARTITIONS_START", PARTITIONS_START)
    # The Spark jars are provisioned once per checkout (`make jars`), not per test.
    monkeypatch.setenv("COLD_SPARK_JARS_DIR", os.environ.get("COLD_SPARK_JARS_DIR") or str(REPO / ".cold" / "spark-jars"))
    for name in list(os.environ):
        if name.startswith(("CLICKHOUSE_", "PYICEBERG_CATALOG__")) or name == "COLD_WARM":
            monkeypatch.delenv(name)
    return Settings.from_env()


@pytest.fixture
def live(settings, monkeypatch) -> Settings:
    """The production defaults: a 30 s settle lag (the shared fixture sets 0 for speed)."""
    monkeypatch.delenv("COLD_SETTLE_LAG_SECONDS")
    live = Settings.from_env()
    assert live.settle_lag_seconds == 30
    return live


@pytest.fixture
def warm(settings: Settings) -> ClickHouseResource:
    """The embedded warm tier with the medallion applied."""
    resource = ClickHouseResource.from_settings(settings)
    with resource.connect() as client:
        apply_warm_ddl(client, WarmLimits.from_settings(settings))
    return resource


@pytest.fixture
def cold(settings: Settings) -> IcebergResource:
    """The embedded cold tier with the nine tables created."""
    resource = IcebergResource.from_settings(settings)
    ensure_cold_tables(resource.catalog())
    return resource


class Receiver:
    """A webhook receiver on loopback that records every JSON body posted to it, and answers
    503 (recording nothing) while `down`."""

    def __init__(self):
        messages = self.messages = []
        self.down = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not outer.down:
                    messages.append(body)
                self.send_response(503 if outer.down else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self):
        return [m["text"] for m in self.messages]


@pytest.fixture
def receiver(monkeypatch):
    r = Receiver()
    monkeypatch.setenv("COLD_ALERT_WEBHOOK_URL", r.url)
    monkeypatch.setenv("COLD_DAGSTER_URL", "http://dagster.example:3000")
    yield r
    r.server.shutdown()


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """cold-assets from its wheel in a fresh venv (support/installed.py)."""
    from cold_assets_tests.support.installed import install

    return install(tmp_path_factory.mktemp("installed"))
