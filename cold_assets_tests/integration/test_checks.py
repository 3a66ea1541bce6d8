"""Parity checks: they pass when the tiers agree and catch a missing row or a changed value."""

from datetime import timedelta

import pyarrow as pa
import pytest
from dagster import AssetKey
from pyiceberg.expressions import EqualTo

from cold_assets.cold.ranges import range_filter
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.tables import TABLES, table_by_cold_name
from cold_assets_tests.support.offload_helpers import KEYS, NO_OVERLAP, START, check_results, feed, run_offload

CHECKS = {"row_count_parity", "content_parity"}


def test_every_check_passes_after_an_offload(settings, warm, cold):
    feed(warm)
    result, instance = run_offload(settings, KEYS)
    results = check_results(instance, result.run_id)
    assert set(results) == {(t.cold, c) for t in TABLES for c in CHECKS}
    assert all(results.values()), [k for k, v in results.items() if not v]


def test_a_deleted_cold_row_fails_row_count_parity_for_that_hour(settings, warm, cold):
    feed(warm)
    run_offload(settings, KEYS)
    bronze = table_by_cold_name("bronze_trades")
    table = cold.catalog().load_table(bronze.cold_identifier)
    start, end = bronze.offload_range(hour_of(KEYS[1]))
    victim = table.scan(row_filter=range_filter("exchange_ts", start, end), limit=1).to_arrow()["trade_id"][0].as_py()
    table.delete(EqualTo("trade_id", victim))
    # The hours are materialized again (without the append overlap, which would re-read the
    # hole): nothing is written twice, and the checks find the hole.
    out, instance = run_offload(settings, KEYS, NO_OVERLAP, raise_on_error=False)
    assert not out.success  # row_count_parity is blocking, with ERROR severity
    bronze_key = AssetKey(["cold", "bronze_trades"])
    evaluations = [
        r.dagster_event.event_specific_data
        for r in instance.all_logs(out.run_id)
        if r.dagster_event and r.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    by_name = {e.check_name: e for e in evaluations if e.asset_key == bronze_key}
    assert by_name["row_count_parity"].passed is False
    differing = by_name["row_count_parity"].metadata["hours_differing"].value
    assert [d["hour"] for d in differing] == [KEYS[1]]
    assert differing[0]["warm_rows"] == differing[0]["cold_rows"] + 1
    assert by_name["content_parity"].passed is False


def _audit(*args):
    import subprocess
    import sys

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cold_assets.tools.cli",
            "audit",
            "--from",
            f"{START:%Y-%m-%dT%H:%M}",
            "--to",
            f"{START + timedelta(hours=3):%Y-%m-%dT%H:%M}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_audit_passes_then_names_the_table_and_hour_of_one_changed_value(settings, warm, cold):
    feed(warm)
    run_offload(settings, KEYS)
    clean = _audit()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 mismatched" in clean.stdout and "0 failed" in clean.stdout
    # Change one value of one cold bar, keeping every count: delete the row, append it changed.
    gold = table_by_cold_name("gold_ohlcv_5m")
    table = cold.catalog().load_table(gold.cold_identifier)
    start, end = gold.offload_range(hour_of(KEYS[2]))
    row = table.scan(row_filter=range_filter("window_start", start, end), limit=1).to_arrow()
    changed = row.set_column(
        row.schema.get_field_index("close"),
        row.schema.field("close"),
        pa.array([row["close"][0].as_py() + 1], row.schema.field("close").type),
    )
    with table.transaction() as tx:
        tx.delete(
            EqualTo("window_start", row["window_start"][0].as_py().isoformat())
            & EqualTo("exchange", row["exchange"][0].as_py())
            & EqualTo("symbol", row["symbol"][0].as_py())
        )
        tx.append(changed)
    audit = _audit()
    assert audit.returncode == 1
    lines = [line for line in audit.stdout.splitlines() if "MISMATCH" in line]
    assert len(lines) == 1 and lines[0].startswith("gold_ohlcv_5m") and KEYS[2] in lines[0] and "CONTENT MISMATCH" in lines[0]
    only = _audit("--table", "raw_trades")
    assert only.returncode == 0 and "gold_ohlcv_5m" not in only.stdout


def test_the_audit_reports_a_gold_window_that_disagrees_with_silver(settings, warm, cold):
    from cold_assets.parity.audit import run_audit

    feed(warm)
    with warm.connect() as client:
        start = hour_of(KEYS[0])
        report = run_audit(client, cold.catalog(), start, start + timedelta(hours=3))
        assert report.medallion_failures == [] and any("gold_ohlcv" not in m.check for m in report.medallion)
        # The audit reads silver FINAL pruned to key ranges: the same counts as a whole FINAL.
        whole = dict(
            client.query(
                "SELECT toStartOfHour(exchange_ts, 'UTC'), count() FROM silver_trades FINAL "
                "WHERE exchange_ts >= {lo:DateTime64(6, 'UTC')} AND exchange_ts < {hi:DateTime64(6, 'UTC')} GROUP BY 1",
                parameters={"lo": start, "hi": start + timedelta(hours=3)},
            ).result_rows
        )
        audited = {m.hour: m.left for m in report.medallion if m.check == "silver <= bronze"}
        assert audited == {partition_key_of(h): n for h, n in whole.items()} and all(audited.values())
        # A bar counted twice in warm gold (the trap the silver view guards against).
        client.command(
            "INSERT INTO gold_ohlcv_5m SELECT exchange, symbol, window_start, open, high, low, close, volume, "
            "quote_volume, trade_count FROM gold_ohlcv_5m WHERE window_start = {w:DateTime64(6, 'UTC')} LIMIT 1",
            parameters={"w": start + timedelta(minutes=65)},
        )
        report = run_audit(client, cold.catalog(), start, start + timedelta(hours=3))
    failures = report.medallion_failures
    assert [(f.check, f.hour) for f in failures] == [("gold_ohlcv_5m windows = silver trades", KEYS[1])]


class ServerLikeClient:
    """A stand-in for a client of a ClickHouse *server* (none can run here): it forwards to
    the embedded engine but is not chDB, so the cold tier's local files count as unreadable."""

    def __init__(self, client):
        self._client = client

    def query(self, *args, **kwargs):
        return self._client.query(*args, **kwargs)


def test_without_a_readable_cold_tier_counts_come_from_iceberg_and_content_is_a_warning(settings, warm, cold):
    from dagster import AssetCheckKey, AssetCheckSeverity

    from cold_assets.defs.checks import parity_check_results
    from cold_assets.hours import HourPolicy
    from cold_assets.parity.checksums import partitions_parity
    from cold_assets.warm.read import warm_now

    feed(warm)
    run_offload(settings, KEYS)
    silver = table_by_cold_name("silver_trades")
    with warm.connect() as client:
        clock = {"now": warm_now(client), "policy": HourPolicy.from_settings(settings)}
        embedded = partitions_parity(client, cold.catalog().load_table(silver.cold_identifier), silver, KEYS, True, **clock)
        server = partitions_parity(ServerLikeClient(client), cold.catalog().load_table(silver.cold_identifier), silver, KEYS, True, **clock)
    assert [(p.warm_rows, p.cold_rows) for p in server] == [(p.warm_rows, p.cold_rows) for p in embedded]
    assert all(p.content_checked for p in embedded) and not any(p.content_checked for p in server)
    key = AssetKey(["cold", "silver_trades"])
    results = {
        r.check_name: r
        for r in parity_check_results(server, {AssetCheckKey(key, "row_count_parity"), AssetCheckKey(key, "content_parity")})
    }
    assert results["row_count_parity"].passed
    assert results["content_parity"].passed is False and results["content_parity"].severity == AssetCheckSeverity.WARN


class ReadWatchingClient:
    """The embedded engine's client (chDB: cold stays readable), forwarded to, noting at each
    query the metadata files waiting in the cold table's reads folder: what ClickHouse is given
    to read."""

    def __init__(self, client, reads_folder):
        from cold_assets.warm.capabilities import capabilities_of, declare

        self._client, self._folder, self.seen = client, reads_folder, []
        declare(self, capabilities_of(client))  # the embedded engine's: it reads local files

    def query(self, *args, **kwargs):
        import json

        files = sorted(self._folder.glob("*.metadata.json")) if self._folder.exists() else []
        given = (kwargs.get("parameters") or {}).get("cold_metadata")  # relative to the table's location
        self.seen.append([(given, f.relative_to(self._folder.parent.parent).as_posix(), json.loads(f.read_text())) for f in files])
        return self._client.query(*args, **kwargs)


def test_clickhouse_reads_cold_through_a_metadata_file_of_only_the_snapshots_it_reads(settings, warm, cold):
    """ClickHouse parses the whole metadata.json on every query (every kept snapshot): each
    read is given a file of the snapshots it reads alone, removed after. Checksums through
    it equal those through the catalog's own file, also as of an earlier snapshot."""
    from pathlib import Path
    from urllib.parse import urlparse

    from cold_assets.cold.read_metadata import READS_FOLDER
    from cold_assets.parity.checksums import (
        ColdTierUnreadable,
        _checksums,
        canonical_row,
        cold_checksums,
        cold_source,
        local_file_access,
    )

    feed(warm)
    run_offload(settings, KEYS)
    bronze = table_by_cold_name("bronze_trades")
    table = cold.catalog().load_table(bronze.cold_identifier)
    start, end = bronze.offload_range(hour_of(KEYS[0]))[0], bronze.offload_range(hour_of(KEYS[-1]))[1]
    before = table.current_snapshot().snapshot_id
    for victim in table.scan(row_filter=range_filter("exchange_ts", start, end), limit=2).to_arrow()["trade_id"].to_pylist():
        table.delete(EqualTo("trade_id", victim))  # a snapshot each: three in all
    assert len(table.snapshots()) == 3
    current = table.current_snapshot().snapshot_id
    folder = Path(urlparse(table.location()).path) / READS_FOLDER

    with warm.connect() as client:
        source, parameters = cold_source(table, client)  # the catalog's own metadata file: every snapshot
        with local_file_access(table):
            whole, whole_then = (
                _checksums(client, source, canonical_row(table), bronze, {"range_start": start, "range_end": end, **parameters}, settings)
                for settings in (None, {"iceberg_snapshot_id": before})
            )
        watching = ReadWatchingClient(client, folder)
        now = cold_checksums(watching, table, bronze, start, end)
        then = cold_checksums(watching, table, bronze, start, end, snapshot_id=before)
        with pytest.raises(ColdTierUnreadable):
            cold_checksums(ServerLikeClient(client), table, bronze, start, end)
    assert now == whole and then == whole_then
    assert sum(r for r, _ in then.values()) == sum(r for r, _ in now.values()) + 2
    (given_now, path_now, read_now), (given_then, path_then, read_then) = (only for only, in watching.seen)
    assert (given_now, given_then) == (path_now, path_then)  # ClickHouse was given the file seen, not the catalog's
    assert [s["snapshot-id"] for s in read_now["snapshots"]] == [current]
    assert sorted(s["snapshot-id"] for s in read_then["snapshots"]) == sorted([before, current])
    assert read_now["current-snapshot-id"] == current and read_now["refs"]["main"]["snapshot-id"] == current
    assert not list(folder.glob("*")), "a read's metadata file outlived it"


def test_where_a_reads_metadata_file_cannot_be_written_clickhouse_reads_the_catalogs_and_says_so(settings, warm, cold, caplog):
    """Storage refusing the read's own metadata file (here a plain file where its folder goes)
    costs speed, not the read: the catalog's file is read instead, and a warning says why."""
    from pathlib import Path
    from urllib.parse import urlparse

    from cold_assets.cold.read_metadata import READS_FOLDER
    from cold_assets.parity.checksums import _checksums, canonical_row, cold_checksums, cold_source, local_file_access

    feed(warm)
    run_offload(settings, KEYS)
    silver = table_by_cold_name("silver_trades")
    table = cold.catalog().load_table(silver.cold_identifier)
    start, end = silver.offload_range(hour_of(KEYS[0]))[0], silver.offload_range(hour_of(KEYS[-1]))[1]
    blocker = Path(urlparse(table.location()).path) / READS_FOLDER
    blocker.rmdir()  # the run's checks left it empty
    blocker.write_text("not a folder")
    with warm.connect() as client:
        source, parameters = cold_source(table, client)
        with local_file_access(table):
            whole = _checksums(client, source, canonical_row(table), silver, {"range_start": start, "range_end": end, **parameters})
        with caplog.at_level("WARNING", logger="cold_assets.cold.read_metadata"):
            read = cold_checksums(client, table, silver, start, end)
    assert read == whole and sum(rows for rows, _ in read.values()) > 0
    assert any("parses the catalog's metadata file instead" in r.getMessage() for r in caplog.records)
    assert blocker.read_text() == "not a folder"
