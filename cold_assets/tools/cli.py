"""The `cold-assets` command: init, simulate, federate, jars, dev, demo, audit, metrics, status, bench."""

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, cast

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError as ClickHouseOperationalError
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from sqlalchemy.exc import OperationalError as CatalogOperationalError

from cold_assets.cold.ddl import ColdTableConflict, ensure_cold_tables
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.maintenance.jars import JavaMissing, SparkJarsError
from cold_assets.partitions import hour_of as hour_of_key
from cold_assets.settings import Settings
from cold_assets.tables import TABLES, Layer, table_by_cold_name
from cold_assets.tools.simulate import FeedConfig, parse_start, simulate
from cold_assets.warm.ddl import WarmLimits, apply_warm_ddl
from cold_assets.warm.embedded_lock import EmbeddedWarmTierBusy
from cold_assets.warm.read import identifier

# Every command's exit codes (docs/operations.md, "Exit codes"): 0 ok; 1 the job failed (a
# mismatch, a view not created, a soak violation); 2 usage or configuration; 3 a tier that
# cannot be reached.
EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
# A tier that does not answer: ClickHouse (server or the embedded lock), the Iceberg catalog's
# database or REST service (requests' errors are OSErrors).
UNREACHABLE = (ClickHouseOperationalError, CatalogOperationalError, EmbeddedWarmTierBusy, OSError)

if TYPE_CHECKING:
    from dagster import DagsterInstance

    from cold_assets.monitoring.metrics import TierCollector

WARM_LAYER_TABLES = ("trades_raw", "trades_rejects", "bronze_trades", "silver_trades", *(t.warm for t in TABLES if t.layer is Layer.GOLD))


def _resources(settings: Settings) -> tuple[ClickHouseResource, IcebergResource]:
    return ClickHouseResource.from_settings(settings), IcebergResource.from_settings(settings)


def _initialized(settings: Settings) -> tuple[ClickHouseResource, IcebergResource]:
    """The tiers of a command that only reads them: an embedded tier that `init` never made is
    refused with the hint, before opening it would create it empty."""
    warm, cold = _resources(settings)
    missing = [
        what for what, path, embedded in (
            ("embedded warm tier", settings.chdb_path, warm.embedded),
            ("embedded catalog", settings.embedded_catalog_path, cold.embedded),
        )
        if embedded and not path.exists()
    ]
    if missing:
        raise ValueError(f"COLD_HOME {settings.home} holds no {' and no '.join(missing)}: run `cold-assets init` first")
    return warm, cold


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    warm, cold = _resources(settings)
    with warm.connect() as client:
        n = apply_warm_ddl(client, WarmLimits.from_settings(settings))
    print(f"warm tier ({warm.describe()}): {n} DDL statements applied")
    plans = ensure_cold_tables(cold.catalog())
    for plan in plans:
        detail = ""
        if plan.add_columns:
            detail += " added " + ", ".join(f.name for f in plan.add_columns)
        if plan.set_properties:
            detail += " set " + ", ".join(plan.set_properties)
        print(f"cold.{plan.definition.name}: {plan.action.value}{detail}")
        for note in plan.notes:
            print(f"  note: {note}")
    return 0


def _feed_config(args: argparse.Namespace, start: datetime) -> FeedConfig:
    return FeedConfig(
        start=start,
        hours=args.hours,
        exchanges=tuple(args.exchanges.split(",")),
        symbols=tuple(args.symbols.split(",")),
        trades_per_hour=args.trades_per_hour,
        seed=args.seed,
        duplicate_share=args.duplicate_share,
        out_of_order_share=args.out_of_order_share,
        late_share=args.late_share,
        malformed_share=args.malformed_share,
    )


def _simulated_trades_allowed(settings: Settings, args: argparse.Namespace, offloads: bool) -> None:
    """Simulated trades go to the embedded default only, unless a flag names the configured
    server (or catalog) as a scratch one: in a deployment the offload would make them
    permanent in the system of record, beside the real trades of their hours."""
    host = settings.clickhouse_host
    if host is not None and args.into_server != host:
        raise ValueError(
            f"{args.command} writes simulated trades, and the warm tier is the ClickHouse server {host!r} (CLICKHOUSE_HOST): "
            f"run it on the embedded default, or pass --into-server {host} if that server is a scratch one"
        )
    if offloads and not IcebergResource.from_settings(settings).embedded and args.into_catalog != settings.catalog_name:
        raise ValueError(
            f"{args.command} offloads simulated trades, and the cold tier is the configured catalog {settings.catalog_name!r} "
            f"(COLD_CATALOG): run it on the embedded default, or pass --into-catalog {settings.catalog_name} if that "
            "catalog is a scratch one"
        )


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    cfg = _feed_config(args, args.start)
    _simulated_trades_allowed(settings, args, offloads=False)
    warm, _ = _resources(settings)
    with warm.connect() as client:
        written = simulate(client, cfg)
    print(f"simulated {written} messages into trades_raw: {cfg.hours} h from {cfg.start.isoformat()}")
    return 0


def warm_counts(client: Client) -> dict[str, int]:
    return {t: int(client.query(f"SELECT count() FROM {identifier(t)}").result_rows[0][0]) for t in WARM_LAYER_TABLES}


def demo_window(settings: Settings, hours: int) -> datetime:
    """The demo's first hour: chosen once (the 6 closed hours before the first run) and kept
    in COLD_HOME, so that running the demo again works on the same hours and adds nothing."""
    state = settings.home / "demo_window.json"
    if state.exists():
        return datetime.fromisoformat(json.loads(state.read_text())["start"])
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=hours + 1)
    settings.home.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"start": start.isoformat(), "hours": hours}))
    return start


# The demo's feed is complete when it is offloaded (nothing in flight), so its run and its
# report use no settle lag; an audit run meanwhile with the default lag counts the rows as in
# flight until they settle.
DEMO_SETTLE_LAG_SECONDS = 0


def demo_keys(settings: Settings, start: datetime, hours: int) -> dict[str, list[str]]:
    """Per cold table, the partition keys that hold the demo's feed: its event hours, and, for
    the rejects (partitioned by ingestion), the hours the feed was ingested in."""
    from cold_assets.partitions import partition_key_of

    event_keys = [partition_key_of(start + timedelta(hours=h)) for h in range(hours)]
    warm, _ = _resources(settings)
    with warm.connect() as client:
        ingested = client.query(
            "SELECT DISTINCT toStartOfHour(ingested_at, 'UTC') FROM trades_raw"
            " WHERE exchange_ts >= {start:DateTime64(6, 'UTC')} AND exchange_ts < {end:DateTime64(6, 'UTC')} ORDER BY 1",
            parameters={"start": start, "end": start + timedelta(hours=hours)},
        ).result_rows
    ingestion_keys = [partition_key_of(h if h.tzinfo else h.replace(tzinfo=UTC)) for (h,) in ingested]
    return {t.cold: ingestion_keys if t.partitioned_by_ingestion else event_keys for t in TABLES}


def _materialize_demo_hours(settings: Settings, keys: dict[str, list[str]]) -> None:
    """Materializes the ten cold assets for the demo's hours through the Dagster instance in
    COLD_HOME/dagster: one ranged run per set of hours (the same run a backfill from the UI
    makes), the event hours for nine tables, the ingestion hours for the rejects."""
    from dagster import AssetCheckKey

    from cold_assets.definitions import build_definitions
    from cold_assets.defs.assets import cold_asset_key
    from cold_assets.defs.checks import CHECK_NAMES
    from cold_assets.defs.schedules import OFFLOAD_JOB
    from cold_assets.tools.instance import embedded_instance

    job = build_definitions(settings).resolve_job_def(OFFLOAD_JOB)
    by_keys: dict[tuple[str, ...], list[str]] = {}
    for table, table_keys in keys.items():
        if table_keys:
            by_keys.setdefault(tuple(table_keys), []).append(table)
    for run_keys, tables in by_keys.items():
        started = time.perf_counter()
        selected = {cold_asset_key(table_by_cold_name(t)) for t in tables}
        subset = job.get_subset(
            asset_selection=selected, asset_check_selection={AssetCheckKey(k, c) for k in selected for c in CHECK_NAMES}
        )
        result = subset.execute_in_process(
            instance=embedded_instance(settings),
            run_config={
                "ops": {f"cold__{t}": {"config": {"settle_lag_seconds": DEMO_SETTLE_LAG_SECONDS}} for t in tables},
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            },
            tags={"dagster/asset_partition_range_start": run_keys[0], "dagster/asset_partition_range_end": run_keys[-1]},
            raise_on_error=False,
        )
        if not result.success:
            raise RuntimeError(f"offload run {result.run_id} failed; see `dagster` logs under {settings.home / 'dagster'}")
        print(
            f"\noffload run {result.run_id} ({len(tables)} tables): {run_keys[0]} .. {run_keys[-1]}, "
            f"{time.perf_counter() - started:.1f} s"
        )


def _report(settings: Settings, keys_by_table: dict[str, list[str]], run_results: dict) -> None:
    from cold_assets.hours import HourPolicy
    from cold_assets.parity.checksums import partitions_parity
    from cold_assets.warm.read import warm_now

    warm, cold = _resources(settings)
    catalog = cold.catalog()
    policy = replace(HourPolicy.from_settings(settings), settle_lag=timedelta(seconds=DEMO_SETTLE_LAG_SECONDS))
    print(f"\nthe demo's hours as its run compared them (settle lag {DEMO_SETTLE_LAG_SECONDS} s):")
    print(f"{'table':<16} {'warm rows':>10} {'cold rows':>10} {'partitions':>10} {'files':>6} {'bytes':>11} {'rows/s':>10}")
    with warm.connect() as client:
        now = warm_now(client)
        for t in TABLES:
            table = catalog.load_table(t.cold_identifier)
            keys = keys_by_table[t.cold]
            # Counted per bucket: the daily bars' day is the same bucket for each of its hours.
            parities = partitions_parity(client, table, t, keys, False, now=now, policy=policy)
            buckets = {t.offload_range(hour_of_key(k))[0]: p for k, p in zip(keys, parities, strict=True)}
            warm_rows = sum(p.warm_rows for p in buckets.values())
            cold_rows = sum(p.cold_rows for p in buckets.values())
            files = table.inspect.files().to_pylist()
            partitions = len({tuple(sorted(f["partition"].items())) for f in files})
            rate = run_results.get(t.cold)
            print(
                f"{t.cold:<16} {warm_rows:>10} {cold_rows:>10} {partitions:>10} {len(files):>6} "
                f"{sum(f['file_size_in_bytes'] for f in files):>11} {rate if rate is not None else '-':>10}"
            )


def _run_rates(settings: Settings) -> dict:
    """rows/s per table of its latest run, summed over that run's hourly materializations."""
    from dagster import AssetRecordsFilter

    from cold_assets.defs.assets import cold_asset_key
    from cold_assets.tools.instance import embedded_instance

    instance = embedded_instance(settings)
    rates = {}
    for t in TABLES:
        records = instance.fetch_materializations(AssetRecordsFilter(asset_key=cold_asset_key(t)), limit=500).records
        latest = [r.asset_materialization.metadata for r in records if r.run_id == records[0].run_id and r.asset_materialization]
        written = sum(cast(int, m["rows_written"].value) for m in latest if "rows_written" in m)
        seconds = sum(cast(float, m["duration_s"].value) for m in latest if "duration_s" in m)
        if latest and seconds:
            rates[t.cold] = round(written / seconds)
    return rates


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    """`dagster dev` (webserver and daemon) on the embedded instance under COLD_HOME/dagster:
    what `make demo` wrote, whatever COLD_HOME is (`dagster dev` in the repository root
    finds the default one only)."""
    from cold_assets.tools.instance import embedded_dagster_home

    dagster = Path(sys.executable).parent / "dagster"
    if not dagster.exists():
        raise ValueError(f"no dagster executable beside {sys.executable}: install the project (make install)")
    home = embedded_dagster_home(settings)
    # The repository's workspace.yaml (location `cold_assets`, as in production); installed
    # without the repository, the code location by module.
    workspace = Path(__file__).resolve().parents[2] / "workspace.yaml"
    location = ["-w", str(workspace)] if workspace.exists() else ["-m", "cold_assets.definitions"]
    command = [str(dagster), "dev", *location, "-h", args.host, "-p", str(args.port)]
    print(f"cold-assets dev: DAGSTER_HOME={home}, http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    os.chdir(home)  # dagster dev reads a dagster.yaml in its working directory too: this one, not the root's
    os.execve(str(dagster), command, {**os.environ, "DAGSTER_HOME": str(home), "COLD_HOME": str(settings.home)})
    return 0  # not reached: the process is dagster dev now


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    _simulated_trades_allowed(settings, args, offloads=True)
    cmd_init(settings, args)
    start = demo_window(settings, args.hours)
    cfg = _feed_config(args, start)
    warm, _ = _resources(settings)
    with warm.connect() as client:
        already = client.query(
            "SELECT count() FROM trades_raw WHERE exchange_ts >= {start:DateTime64(6, 'UTC')} AND exchange_ts < {end:DateTime64(6, 'UTC')}",
            parameters={"start": cfg.start, "end": cfg.start + timedelta(hours=cfg.hours)},
        ).result_rows[0][0]
        if already:
            print(f"demo feed already in the warm tier ({already} messages from {cfg.start.isoformat()}): not simulated again")
        else:
            written = simulate(client, cfg)
            print(f"simulated {written} messages: {cfg.hours} h from {cfg.start.isoformat()}")
        counts = warm_counts(client)
    print("\nwarm rows per table (as stored)")
    for table, count in counts.items():
        print(f"  {table:<16} {count:>10}")
    keys = demo_keys(settings, cfg.start, cfg.hours)
    _materialize_demo_hours(settings, keys)
    _report(settings, keys, _run_rates(settings))
    return 0


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    from cold_assets.hours import HourPolicy
    from cold_assets.parity.audit import format_report, run_audit

    tables = [table_by_cold_name(name) for name in args.table] if args.table else None
    start, end = args.start, args.end
    warm, cold = _initialized(settings)
    with warm.connect() as client:
        report = run_audit(client, cold.catalog(), start, end, tables, HourPolicy.from_settings(settings))
    print(format_report(report))
    return 0 if report.ok else EXIT_FAILED


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    from cold_assets.defs.nightly import audit_observations
    from cold_assets.hours import HourPolicy
    from cold_assets.recovery.restore import format_restore, restore

    tables = [table_by_cold_name(name) for name in args.tables] if args.tables else None
    warm, cold = _initialized(settings)
    with warm.connect() as client:
        report = restore(
            client, cold.catalog(), args.start, args.end, tables, HourPolicy.from_settings(settings), dry_run=args.dry_run
        )
        clickhouse_version = str(client.server_version)
    print(format_restore(report))
    if report.audit is not None:
        # The audit's verdicts, into Dagster's instance, where the sensors, the exporter and the
        # status page read them (as the restore job records them).
        instance = _dagster_instance(settings)
        for observation in audit_observations(report.audit, args.start, args.end, clickhouse_version):
            instance.report_runless_asset_event(observation)
    return 0 if report.ok else EXIT_FAILED


def cmd_reprocess(settings: Settings, args: argparse.Namespace) -> int:
    import uuid

    from cold_assets.defs.recovery import follow_reprocessed_commits, open_scratch
    from cold_assets.hours import HourPolicy
    from cold_assets.recovery.reprocess import format_reprocess, read_warm, reprocess
    from cold_assets.warm.ddl import WarmLimits

    ddl = Path(args.ddl) if args.ddl else None
    if ddl is not None and not any(ddl.glob("*.sql")):
        raise ValueError(f"--ddl {ddl} holds no .sql file")
    warm, cold = _initialized(settings)
    policy, limits = HourPolicy.from_settings(settings), WarmLimits.from_settings(settings)
    with warm.connect() as client:  # closed before the scratch opens
        reading = read_warm(client, cold.catalog(), args.start, args.end, policy, limits)
    run_id = f"reprocess-{uuid.uuid4()}"
    report = reprocess(
        cold.catalog(), open_scratch, settings.home / "scratch" / run_id, args.start, args.end, run_id,
        limits, reading.now, policy, ddl=ddl, dry_run=args.dry_run, reference=reading.reference,
        log=lambda line: print(line, flush=True), warm_held=reading.held,
    )
    if report.days_replaced:
        follow_reprocessed_commits(warm, cold.catalog())
    print(format_reprocess(report))
    return EXIT_FAILED if report.stopped else 0


def _dagster_instance(settings: Settings) -> "DagsterInstance":
    """DAGSTER_HOME's instance, or the embedded default's under COLD_HOME."""
    from dagster import DagsterInstance

    from cold_assets.tools.instance import embedded_instance

    return DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else embedded_instance(settings)


def _tier_collector(settings: Settings, args: argparse.Namespace) -> "TierCollector":
    """The reader of the metrics and the status page: Dagster's instance (DAGSTER_HOME's, or
    the embedded default's under COLD_HOME) and the catalog. Neither tier's data is read."""

    from cold_assets.monitoring.metrics import TierCollector
    from cold_assets.monitoring.tier_status import TierReader

    if args.window_days is not None and args.window_days < 1:
        raise ValueError(f"--window-days must be at least 1, got {args.window_days}")
    _, cold = _initialized(settings)  # (the warm tier is never opened)
    instance = _dagster_instance(settings)
    where = os.environ.get("DAGSTER_HOME") or settings.home / "dagster"
    print(f"cold-assets {args.command}: Dagster instance {where}; cold {cold.describe()}", file=sys.stderr, flush=True)
    window = timedelta(days=args.window_days) if args.window_days is not None else None
    return TierCollector(TierReader(instance, cold.catalog(), settings, window), args.refresh_seconds)


def cmd_metrics(settings: Settings, args: argparse.Namespace) -> int:
    import threading

    from cold_assets.monitoring.exporter import exporter_server
    from cold_assets.monitoring.metrics import STUCK_S

    collector = _tier_collector(settings, args)
    server = exporter_server(args.listen, collector)
    collector.start()

    def watchdog() -> None:
        # A reading that hangs (a catalog or database that never answers) is not waited out:
        # the process exits, and its supervisor (the stack's restart policy) starts it again.
        while True:
            time.sleep(30)
            if collector.reading_for() > STUCK_S:
                print(f"cold-assets metrics: a reading has hung for {collector.reading_for():.0f} s: exiting", file=sys.stderr, flush=True)
                os._exit(EXIT_UNREACHABLE)

    threading.Thread(target=watchdog, daemon=True).start()
    print(f"cold-assets metrics: http://{args.listen}/metrics and the status page at /", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from cold_assets.monitoring.status_page import render_html

    collector = _tier_collector(settings, args)
    target = Path(args.html)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(render_html(collector.status()))
    partial.replace(target)  # a page served from there is never half written
    print(f"cold-assets status: written to {args.html}", file=sys.stderr)
    return 0


def cmd_federate(settings: Settings, args: argparse.Namespace) -> int:
    from cold_assets.federation import federate
    from cold_assets.hours import HourPolicy

    warm, cold = _initialized(settings)
    with warm.connect() as client:
        results = federate(client, cold.catalog(), HourPolicy.from_settings(settings))
    for r in results:
        if r.error:
            print(f"{r.view:24} FAILED, cutover stays: {r.error}", file=sys.stderr)
            continue
        moved = "unchanged" if r.previous == r.cutover else f"moved from {r.previous:%Y-%m-%d %H:%M}" if r.previous else "new"
        print(f"{r.view:24} cutover {r.cutover:%Y-%m-%d %H:%M} UTC ({moved}; {r.hours_proven} hours proven)")
    return EXIT_FAILED if any(r.error for r in results) else 0


def cmd_jars(settings: Settings, args: argparse.Namespace) -> int:
    from cold_assets.maintenance.class_data import ensure_archive
    from cold_assets.maintenance.jars import pinned_jars, provision

    jars = pinned_jars(settings.spark_s3)
    for path in provision(settings.spark_jars_dir, jars):
        print(path)
    if settings.spark_packages:  # Spark resolves other jars: the archive would not match them
        print("class-data archive: skipped (COLD_SPARK_PACKAGES is set)")
    else:
        ensure_archive(settings.spark_jars_dir, jars)
    return 0


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from cold_assets.tools import bench

    if args.what == "feed":
        bench.print_json(bench.bench_feed(args.trades, args.home))
    elif args.what == "checks":
        bench.print_json(bench.bench_checks(args.home))
    elif args.what == "maintenance":
        bench.print_json(bench.bench_maintenance(args.days or 7, args.home, args.state))
    elif args.what == "federation":
        bench.print_json(bench.bench_federation(args.days or 28, args.trades_per_hour or 2_000, parent=args.home))
    elif args.what == "storage":
        from cold_assets.tools.bench_storage import PRODUCTION_TRADES_PER_HOUR, bench_storage

        bench.print_json(bench_storage(args.hours or 24, args.trades_per_hour or PRODUCTION_TRADES_PER_HOUR, args.home))
    elif args.what == "history":
        from cold_assets.tools.bench_history import bench_history

        bench.print_json(bench_history(args.days or 30, args.home))
    elif args.what == "steady":
        from cold_assets.tools.bench_steady import bench_steady

        per_hour = args.trades_per_hour or bench.DEMO_TRADES_PER_HOUR
        bench.print_json(
            bench_steady(
                args.days or 30, args.ticks, parent=args.home, trades_per_hour=per_hour, dagster_postgres=args.dagster_postgres,
                profile_dir=args.profile_dir, history_trades_per_hour=args.history_trades_per_hour,
            )
        )
    elif args.what == "reprocess":
        from cold_assets.tools.bench_reprocess import bench_reprocess

        bench.print_json(bench_reprocess(args.days or 30, args.home, args.trades_per_hour or bench.DEMO_TRADES_PER_HOUR))
    elif args.what == "sensors":
        from cold_assets.tools.bench_sensors import PRODUCTION_TRADES_PER_HOUR as SENSORS_TRADES_PER_HOUR
        from cold_assets.tools.bench_sensors import bench_sensors

        bench.print_json(bench_sensors(args.days or 30, args.trades_per_hour or SENSORS_TRADES_PER_HOUR, args.home, args.state))
    else:
        bench.print_json(bench.bench_offload(args.rows, args.home, dagster=not args.skip_dagster))
    return 0


def cmd_soak(settings: Settings, args: argparse.Namespace) -> int:
    import secrets

    from cold_assets.soak.driver import soak, summary

    seeds = args.seed or [secrets.randbelow(1_000_000)]
    spark = not args.no_spark and settings.spark_jars_dir.exists()
    print(f"soak: seeds {', '.join(map(str, seeds))} (replay one with --seed N), {args.steps} steps each"
          + (f", at most {args.minutes} min in all" if args.minutes else "") + ("" if spark else ", no Spark"), flush=True)

    def log(line: str) -> None:
        if args.verbose or line.startswith(("VIOLATION", "seed ", "Traceback")):
            print(line, flush=True)

    tally = soak(seeds, args.steps, args.minutes, args.hours, spark, log, child_errors=args.verbose, parallel=args.parallel)
    print(summary(tally, seeds))
    return EXIT_FAILED if tally.violations else 0


def _add_feed_options(p: argparse.ArgumentParser, trades_per_hour: int) -> None:
    p.add_argument("--hours", type=int, default=6)
    p.add_argument("--exchanges", default="binance,kraken", help="comma-separated")
    p.add_argument("--symbols", default="BTC-USDT,ETH-USDT,SOL-USDT", help="comma-separated canonical symbols")
    p.add_argument("--trades-per-hour", type=int, default=trades_per_hour, help="over all (exchange, symbol) streams")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--duplicate-share", type=float, default=0.002)
    p.add_argument("--out-of-order-share", type=float, default=0.01)
    p.add_argument("--late-share", type=float, default=0.001)
    p.add_argument("--malformed-share", type=float, default=0.0005)


def hour_arg(value: str) -> datetime:
    """A flag's hour: ISO 8601, UTC without an offset, on the hour (a range of whole hours is
    what the tiers compare; a value inside an hour is refused, not floored)."""
    try:
        at = parse_start(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO 8601 date or date-time (for example 2026-12-01 or 2026-12-01T13:00)"
        ) from None
    if at != at.replace(minute=0, second=0, microsecond=0):
        raise argparse.ArgumentTypeError(f"{value!r} is not on the hour (whole hours only: {at:%Y-%m-%dT%H}:00)")
    return at


def _version() -> str:
    try:
        return f"cold-assets {version('cold-assets')}"
    except PackageNotFoundError:
        return "cold-assets (not installed as a package: no version)"


def _add_into_flags(p: argparse.ArgumentParser, catalog: bool) -> None:
    p.add_argument("--into-server", metavar="HOST",
                   help="write simulated trades into this ClickHouse server (CLICKHOUSE_HOST must be it): a scratch one")
    if catalog:
        p.add_argument("--into-catalog", metavar="NAME",
                       help="offload simulated trades into this configured catalog (COLD_CATALOG must be it): a scratch one")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cold-assets", description=__doc__)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create or evolve the warm medallion and the ten cold tables").set_defaults(func=cmd_init)
    p = sub.add_parser("simulate", help="write a realistic Binance/Kraken trade feed into trades_raw")
    p.add_argument("--start", required=True, type=hour_arg, help="first hour, ISO 8601 (UTC if no offset), on the hour")
    _add_feed_options(p, trades_per_hour=20_000)
    _add_into_flags(p, catalog=False)
    p.set_defaults(func=cmd_simulate)
    sub.add_parser(
        "federate", help="create or replace the <warm table>_all views over both tiers, cutover as far as parity allows"
    ).set_defaults(func=cmd_federate)
    sub.add_parser("jars", help="provision Spark's pinned jars (PyPI wheels, Debian packages) into COLD_SPARK_JARS_DIR").set_defaults(
        func=cmd_jars
    )
    p = sub.add_parser("dev", help="the Dagster webserver and daemon (dagster dev) on the embedded instance of COLD_HOME")
    p.add_argument("--host", default="127.0.0.1", help="address the webserver listens on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_dev)
    p = sub.add_parser("demo", help="init, simulate 6 hours, report")
    _add_feed_options(p, trades_per_hour=20_000)
    _add_into_flags(p, catalog=True)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser(
        "audit",
        help="compare warm and cold hour by hour; exit 0 if all match, 1 on a mismatch, 2 on bad usage or "
        "configuration, 3 when a tier cannot be reached",
    )
    _add_range_flags(p)
    p.add_argument("--table", action="append", help="a cold table name (repeatable); default: all ten")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser(
        "restore",
        help="write cold's rows back into the warm tables that lack them, for hours inside warm's retention, then audit "
        "the range; exit 0 when the audit is green, 1 if not, 2 on a refused range",
    )
    _add_range_flags(p)
    p.add_argument("--tables", nargs="+", metavar="TABLE", help="cold table names; default: all ten")
    p.add_argument("--dry-run", action="store_true", help="print per table and partition what would be written; write nothing")
    p.set_defaults(func=cmd_restore)
    p = sub.add_parser(
        "reprocess",
        help="recompute bronze, silver and gold from cold raw with the medallion's DDL for days no trade can still "
        "reach, and replace the hours that change (hours warm still holds are marked reprocessed)",
    )
    _add_range_flags(p, days=True)
    p.add_argument("--ddl", help="a folder of ClickHouse DDL to reprocess with (default: the project's ddl/clickhouse)")
    p.add_argument("--dry-run", action="store_true", help="report per table what changes, with a sample; write nothing")
    p.set_defaults(func=cmd_reprocess)
    p = sub.add_parser(
        "metrics", help="serve Prometheus metrics of the cold tier at /metrics, and the status page at /, from Dagster's record"
    )
    p.add_argument("--listen", default="127.0.0.1:9108", help="HOST:PORT to serve on (default 127.0.0.1:9108)")
    p.add_argument(
        "--refresh-seconds", type=float, default=15.0,
        help="read Dagster's instance and the catalog again this long after the last reading ended (15); scrapes serve the newest",
    )
    _add_window_option(p)
    p.set_defaults(func=cmd_metrics)
    p = sub.add_parser("status", help="write the status page (every hour's state, freshness, nightly jobs, cutovers) to a file")
    p.add_argument("--html", required=True, help="the HTML file to write")
    p.set_defaults(refresh_seconds=0.0)
    _add_window_option(p)
    p.set_defaults(func=cmd_status)
    p = sub.add_parser(
        "soak",
        help="random interleavings of real operations and faults on throwaway state, checked against a ledger; "
        "exit 1 on a violation (each printed with its seed and step)",
    )
    p.add_argument("--seed", type=int, action="append", help="a seed (repeatable); default: a fresh one, printed")
    p.add_argument("--steps", type=int, default=300, help="steps per seed (300)")
    p.add_argument("--minutes", type=float, default=None, help="bound the whole soak's time (each seed gets its share)")
    p.add_argument("--hours", type=int, default=24, help="hours of history fed and offloaded first (24)")
    p.add_argument("--no-spark", action="store_true", help="leave out compaction, and expire snapshots with pyiceberg")
    p.add_argument("--parallel", type=int, default=1, help="seeds run at once, each in its own process (1)")
    p.add_argument("--verbose", action="store_true", help="print every step")
    p.set_defaults(func=cmd_soak)
    p = sub.add_parser("bench", help="measure and print the figures the issues ask for (JSON)")
    p.add_argument(
        "what",
        nargs="?",
        default="offload",
        choices=["offload", "feed", "checks", "maintenance", "federation", "history", "storage", "sensors", "steady", "reprocess"],
        help="offload (default): one warm bronze hour into Iceberg, with floors; feed: the simulator into chDB; "
        "checks: parity checks' share of a run, and the 24-hour audit; maintenance: the nightly Spark jobs "
        "after --days (7) days at demo volume (a first night), then after one more day (a steady night); "
        "federation: OHLCV latency through a view over --days (28) days; "
        "history: the first backfill of --days (30) days of the ten tables through Dagster, then the tick, the "
        "sensors, the nightly maintenance and OHLCV through the view on that history; storage: --hours (24) at "
        "--trades-per-hour (100,000) offloaded and compacted, bytes against ClickHouse's own parts; sensors: the "
        "self-healing and TTL-guard ticks after --days (30) days at --trades-per-hour (200,000); steady: the "
        "15-minute tick on day one and after --days (30) days of history, --ticks (96) of them; reprocess: --days (30) "
        "days reprocessed from cold raw unchanged, and with every derived row changed, against the floors",
    )
    p.add_argument("--rows", type=int, default=2_000_000, help="offload: rows in the bronze hour")
    p.add_argument("--ticks", type=int, default=96, help="steady: ticks after the month (96: a day)")
    p.add_argument(
        "--dagster-postgres",
        action="store_true",
        help="steady: keep the Dagster instance on PostgreSQL (docker/dagster.yaml), in the empty, throwaway "
        "database DAGSTER_POSTGRES_URL names, instead of SQLite",
    )
    p.add_argument(
        "--profile-dir",
        default=None,
        help="steady: keep the profiled ticks' and sensors' cProfile stats there (day_one-first.pstats, ..., "
        "after_month-ttl_guard.pstats)",
    )
    p.add_argument(
        "--history-trades-per-hour",
        type=int,
        default=None,
        help="steady: the month before its last day fed at this rate instead of --trades-per-hour (the ticks' "
        "day and its hours keep --trades-per-hour): a tick at 10 x volume after a month, without feeding the "
        "whole month at 10 x",
    )
    p.add_argument("--trades", type=int, default=5_000_000, help="feed: trades to simulate")
    p.add_argument("--hours", type=int, default=None, help="storage: hours of data (24)")
    p.add_argument("--trades-per-hour", type=int, default=None, help="per hour: storage (100,000), sensors (200,000), federation (2,000)")
    p.add_argument("--days", type=int, default=None, help="maintenance (7), federation (28), history and sensors (30): days of data")
    p.add_argument(
        "--state",
        default=None,
        help="maintenance, sensors: keep the built history in this folder for the next run (skips the build)",
    )
    p.add_argument("--skip-dagster", action="store_true", help="offload: leave out the Dagster single-run figure")
    p.add_argument("--home", default=None, help="parent folder of the throwaway state (default: system temp)")
    p.set_defaults(func=cmd_bench)
    return parser


# The commands that read or write the configured tiers (bench and soak keep to throwaway state).
TIER_COMMANDS = ("init", "simulate", "federate", "dev", "demo", "audit", "restore")  # metrics and status say their own


def _add_range_flags(p: argparse.ArgumentParser, days: bool = False) -> None:
    """--from and --to: a range of whole hours (or, with `days`, of whole days, on midnights)."""
    first, end = ("first day, ISO 8601 (a midnight, UTC)", "a midnight") if days else (
        "first hour, ISO 8601 (UTC if no offset)", "on the hour"
    )
    p.add_argument("--from", dest="start", required=True, type=hour_arg, help=first)
    p.add_argument("--to", dest="end", required=True, type=hour_arg, help=f"end of the range (exclusive), {end}")


def _add_window_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--window-days", type=int, default=None,
        help="days of hours shown and counted by state, up to the current hour (default: the warm retention and a day, 31)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command in TIER_COMMANDS:  # which tiers, visibly, before anything is opened
            warm, cold = _resources(settings)
            print(f"cold-assets {args.command}: warm {warm.describe()}; cold {cold.describe()}", file=sys.stderr, flush=True)
        return args.func(settings, args)
    except UNREACHABLE as unreachable:
        print(f"cold-assets {args.command}: a tier cannot be reached: {type(unreachable).__name__}: {unreachable}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (ColdTableConflict, ValueError, NoSuchTableError, NoSuchNamespaceError, SparkJarsError, JavaMissing) as exc:
        print(f"cold-assets {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as exc:  # the job itself failed (a run, a refusal to lose rows): not the usage
        print(f"cold-assets {args.command}: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
