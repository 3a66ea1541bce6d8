"""`cold-assets soak`: random interleavings of real operations and real faults, checked after
every step against a ledger of the soak's own (soak/ledger.py).

The stack is the real one, on throwaway state: embedded chDB through clickhouse-connect, an
Iceberg catalog and warehouse on disk, a Dagster instance, the offload job, its schedule and
sensors, the nightly jobs, with the production settle lag. Time is the real clock: the fed
hours are the last `hours` hours, the current one open.

Invariants, after every step:
- cold holds no row the ledger does not hold, and no row more often (a duplicate);
- a parity check that passed on a closed hour whose rows have all settled agrees with the
  ledger (cold, right after the run, holds exactly the ledger's rows of that hour), and so
  does an hour `cold-assets audit` finds equal;
- every run that failed raised an alert (delivered, or waiting to be tried again);
and at the end, after a drain (faults off, rows settled, the schedule's tick, the sensors'
repairs until they request nothing, and the runbook's backfill of a rolled-back table):
- every row the ledger holds is in cold exactly once, hours warm has forgotten included;
- every failure's alert was delivered.

What the soak does not model, and why: the warm TTL of a real deployment deletes an hour 30
days after it, when the TTL guard has long proven it; the soak's TTL step forgets the oldest
hour only once cold holds it whole (as that guard would have ensured), and the feed sends
nothing more into a forgotten hour (max_lateness would reject it). A rollback that would
remove a forgotten hour's only copy is an operator's loss, not the product's: it is undone.
"""

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from threading import Thread
from typing import cast

from pyiceberg.table import Table

from cold_assets.soak.child import OUTCOME
from cold_assets.soak.ledger import INSTRUMENTS, RAW_COLUMNS, SIDES, Ledger, Limits, Message, hour_floor
from cold_assets.tables import TABLES, Layer, MirroredTable, OffloadMode, table_by_cold_name

# Operations and faults, with their weights (per step) and probabilities (per run).
OPERATIONS: dict[str, int] = {
    "feed": 18, "late": 10, "duplicates_and_malformed": 8, "tick": 14, "sensors": 10, "backfill": 6, "repair": 6,
    "ttl": 4, "add_column": 2, "expiry": 4, "compaction": 2, "rollback": 4, "federate": 4, "audit": 3, "restore": 3,
}
FAULTS = {"kill": 0.10, "second_writer": 0.10, "writer_before_plan": 0.08, "unknown_commit": 0.08}
WEBHOOK_FLIP = 0.12  # per step: the webhook goes down, or comes back
MAX_ADDED_COLUMNS = 3
RUN_TIMEOUT_S = 1800  # a run process past this hangs: a violation, not a wait
QUIET = {"console": {"config": {"log_level": "WARNING"}}}  # the runs' own log lines: warnings and errors only


@dataclass
class Violation:
    seed: int
    step: int
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"VIOLATION seed={self.seed} step={self.step} [{self.invariant}] {self.detail}"


@dataclass
class Tally:
    operations: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    invariants: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)

    def merge(self, other: "Tally") -> None:
        self.operations += other.operations
        self.faults += other.faults
        self.invariants += other.invariants
        self.skipped += other.skipped
        self.violations += other.violations


class Webhook:
    """The alert webhook on loopback: takes every message while up, answers 503 while down."""

    def __init__(self) -> None:
        self.up, self.delivered = True, list[str]()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if outer.up:
                    outer.delivered.append(body["text"])
                self.send_response(200 if outer.up else 503)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Soak:
    """One seed's run. Everything random comes from `self.rng`: the same seed, the same
    choices (the clock and the machine's timing still vary a replay a little)."""

    def __init__(self, seed: int, home: Path, hours: int, spark: bool, log: Callable[[str], None]):
        from cold_assets.cold.ddl import ensure_cold_tables
        from cold_assets.definitions import build_definitions
        from cold_assets.defs.resources import ClickHouseResource, IcebergResource
        from cold_assets.partitions import PARTITION_FORMAT
        from cold_assets.settings import THROWAWAY_CATALOG, Settings
        from cold_assets.tools.instance import embedded_instance
        from cold_assets.warm.ddl import WarmLimits, apply_warm_ddl

        self.seed, self.rng, self.log, self.spark = seed, random.Random(seed), log, spark
        self.tally = Tally()
        self.step = 0
        self.webhook = Webhook()
        now = datetime.now(UTC)
        self.env = {
            "COLD_HOME": str(home),
            "COLD_CATALOG": THROWAWAY_CATALOG,
            "COLD_PARTITIONS_START": (hour_floor(now) - timedelta(days=3)).strftime(PARTITION_FORMAT),
            "COLD_ALERT_WEBHOOK_URL": self.webhook.url,
            "COLD_HEAL_RETRY_SECONDS": "0",  # the soak's minutes stand for the days between retries
        }
        for name in list(os.environ):
            if name.startswith(("CLICKHOUSE_", "PYICEBERG_CATALOG__")) or name in ("COLD_SETTLE_LAG_SECONDS", "COLD_WARM"):
                os.environ.pop(name)
        os.environ.update(self.env)
        self.settings = Settings.from_env()
        self.settle_lag = timedelta(seconds=self.settings.settle_lag_seconds)
        self.warm = ClickHouseResource.from_settings(self.settings)
        with self.warm.connect() as client:
            apply_warm_ddl(client, WarmLimits.from_settings(self.settings))
        self.catalog = IcebergResource.from_settings(self.settings).catalog()
        ensure_cold_tables(self.catalog)
        self.defs = build_definitions(self.settings)
        self.instance = embedded_instance(self.settings)
        self.ledger = Ledger(
            Limits(
                max_lateness=timedelta(days=self.settings.ttl_margin_days),
                max_lead=timedelta(seconds=300),
                retention=timedelta(days=self.settings.warm_retention_days),
            )
        )
        self.hours = [hour_floor(now) - timedelta(hours=h) for h in range(hours - 1, -1, -1)]
        self.forgotten: set[datetime] = set()
        self.rolled_back: set[str] = set()
        self.added_columns = 0
        self.next_trade_id = {key: 1_000_000 * (n + 1) for n, key in enumerate(INSTRUMENTS)}
        self.failed_runs: dict[str, str] = {}  # run id -> what failed
        self.checked_snapshots: dict[str, int | None] = {}
        self.sensor_cursors: dict[str, str | None] = {}
        self.launched_run_keys: set[str] = set()  # Dagster launches a run key once
        self._cold_read: dict[tuple[str, int | None], Counter] = {}  # (table, snapshot id) -> rows

    # -- the feed ---------------------------------------------------------------------------

    def _trade(self, exchange_ts: datetime, ingested_at: datetime) -> Message:
        exchange, symbol = self.rng.choice(sorted(INSTRUMENTS))
        trade_id = self.next_trade_id[(exchange, symbol)]
        self.next_trade_id[(exchange, symbol)] += 1
        price = f"{self.rng.randint(100, 99_999)}.{self.rng.randint(0, 99):02d}"
        quantity = f"0.{self.rng.randint(1, 99_999):05d}"
        return Message(
            exchange, symbol, str(trade_id), price, quantity, self.rng.choice(SIDES[exchange]),
            exchange_ts, exchange_ts, json.dumps({"t": trade_id}), ingested_at,
        )

    def _insert(self, messages: list[Message]) -> None:
        if not messages:
            return
        with self.warm.connect() as client:
            client.insert("trades_raw", [m.row() for m in messages], column_names=RAW_COLUMNS)
        self.ledger.add(messages)

    def _open_hours(self) -> list[datetime]:
        return [h for h in self.hours if h not in self.forgotten]

    def op_feed(self) -> str:
        now = datetime.now(UTC)
        n = self.rng.randint(10, 60)
        messages = [self._trade(now - timedelta(milliseconds=self.rng.randint(0, 5_000)), now) for _ in range(n)]
        self._insert(messages)
        return f"{n} trades into the current hour"

    def op_late(self) -> str:
        now = datetime.now(UTC)
        closed = [h for h in self._open_hours() if h < hour_floor(now)]
        if not closed:
            return "no closed hour to be late into"
        # Up to the edge of the window: the oldest hours warm still holds whole.
        hour = self.rng.choice(closed[:3] if self.rng.random() < 0.3 else closed)
        n = self.rng.randint(1, 20)
        messages = [self._trade(hour + timedelta(seconds=self.rng.randint(0, 3599)), now) for _ in range(n)]
        self._insert(messages)
        return f"{n} late trades into {hour:%H:%M}"

    def op_duplicates_and_malformed(self) -> str:
        now = datetime.now(UTC)
        out: list[Message] = []
        fed = [
            m for m in self.ledger.messages
            if self.ledger.reject_reason(m) is None and hour_floor(m.exchange_ts) not in self.forgotten
        ]
        for m in self.rng.sample(fed, min(len(fed), self.rng.randint(0, 5))):
            # A redelivery: the same message again, received and ingested now.
            out.append(Message(m.exchange, m.symbol, m.trade_id, m.price, m.quantity, m.side, m.exchange_ts, now, m.message, now))
        for _ in range(self.rng.randint(1, 4)):
            good = self._trade(now - timedelta(seconds=self.rng.randint(0, 60)), now)
            kind = self.rng.choice(["trade_id", "price", "side", "1970", "late", "future"])
            bad = {
                "trade_id": replace(good, trade_id="12ab"), "price": replace(good, price="-3.5"), "side": replace(good, side="?"),
                "1970": replace(good, exchange_ts=datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)),
                "late": replace(good, exchange_ts=now - timedelta(days=29, hours=23)),
                "future": replace(good, exchange_ts=now + timedelta(hours=2)),
            }[kind]
            out.append(bad)
        self._insert(out)
        return f"{len(out)} duplicate or malformed messages"

    # -- runs -------------------------------------------------------------------------------

    def _run(self, keys: list[str], tables: list[MirroredTable] | None = None, replace_hour: bool = False,
             tags: dict[str, str] | None = None, why: str = "") -> str:
        """One offload run through Dagster, with the faults the dice choose."""
        tables = tables or list(TABLES)
        tags = {k: v for k, v in (tags or {}).items() if not k.startswith(("dagster/partition", "dagster/asset_partition_range"))}
        if len(keys) > 1:
            tags |= {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
        else:
            tags["dagster/partition"] = keys[0]
        config = {
            "ops": {f"cold__{t.cold}": {"config": {"replace_hour": replace_hour}} for t in tables},
            "loggers": QUIET,
        }
        names = [t.cold for t in tables]
        if self.rng.random() < FAULTS["kill"]:
            return self._run_in_child(keys, names, config, tags, why, [], kill_after=self.rng.uniform(1.0, 9.0))
        faults = [f for f in ("second_writer", "writer_before_plan", "unknown_commit") if self.rng.random() < FAULTS[f]]
        return self._run_in_child(keys, names, config, tags, why, faults, kill_after=None)

    def _run_in_child(
        self, keys: list[str], tables: list[str], config: dict, tags: dict, why: str, faults: list[str],
        kill_after: float | None,
    ) -> str:
        """The run in a process of its own (soak/child.py), as a run worker is, with `faults`;
        SIGKILLed after `kill_after` seconds, and then marked failed as Dagster's run monitoring
        does for a worker that died."""
        from dagster import DagsterRunStatus, RunsFilter

        marker = str(uuid.uuid4())
        tags = {**tags, "cold-assets/soak-run": marker}
        spec = json.dumps({"tables": tables, "config": config, "tags": tags, "faults": faults})
        errors = self.settings.home / "run-processes.log"  # their stderr: Dagster's warnings of the runs broken on purpose
        with open(errors, "a") as stderr:
            stderr.write(f"--- seed {self.seed} step {self.step}: {why} run {marker}\n")
            stderr.flush()
            child = subprocess.Popen(
                [sys.executable, "-m", "cold_assets.soak.child", spec], env={**os.environ, **self.env},
                stdout=subprocess.PIPE, stderr=stderr, text=True,
            )
            killed = hung = False
            try:
                said, _ = child.communicate(timeout=kill_after or RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
                child.communicate()
                said, killed, hung = "", kill_after is not None, kill_after is None
        outcomes = [line.removeprefix(OUTCOME) for line in said.splitlines() if line.startswith(OUTCOME)]
        outcome = json.loads(outcomes[-1]) if outcomes and not killed else None
        if outcome is None and not killed:
            said = f"ran past {RUN_TIMEOUT_S} s" if hung else f"exited {child.returncode}"
            self._violate("runs end", f"the {why} run's process {said} without an outcome (its stderr: {errors})")
        ran = self.instance.get_runs(filters=RunsFilter(tags={"cold-assets/soak-run": marker}))
        if outcome is not None and ([r.run_id for r in ran] != [outcome["run_id"]] or outcome["success"] != (
            ran[0].status == DagsterRunStatus.SUCCESS
        )):
            self._violate("runs end", f"the {why} run's outcome {outcome} is not what the instance holds: {ran}")
        for run in ran:
            if run.status not in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
                self.instance.report_run_failed(run, message="soak: the run's process died")
        if killed:
            self.tally.faults["kill"] += 1
        fired = outcome["fired"] if outcome else []
        for name in fired:
            self.tally.faults[name] += 1
        for run in self.instance.get_runs(filters=RunsFilter(tags={"cold-assets/soak-run": marker})):
            self._after_run(run.run_id, run.status == DagsterRunStatus.SUCCESS, killed=killed)
        if killed:
            return f"{why} run {keys[0]}..{keys[-1]}: SIGKILLed after {kill_after:.1f} s"
        result = "ok" if outcome and outcome["success"] else "FAILED"
        return f"{why} run {ran[0].run_id[:8] if ran else '(no run)'} {keys[0]}..{keys[-1]} {len(tables)} tables: {result}" + (
            f" (faults: {','.join(fired)})" if fired else ""
        )

    def _after_run(self, run_id: str, success: bool, killed: bool = False) -> None:
        """What the daemon does after a run (the failure sensor), and the checks' invariant."""
        if not success:
            self.failed_runs[run_id] = "killed" if killed else "failed"
            self._failure_sensor(run_id)
        self._check_results_agree_with_ledger(run_id)

    def _failure_sensor(self, run_id: str) -> None:
        """What the daemon's run failure sensor does when the run fails."""
        from dagster import DagsterEventType, build_run_status_sensor_context

        from cold_assets.defs.schedules import OFFLOAD_JOB

        run = self.instance.get_run_by_id(run_id)
        records = self.instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)
        event = records[-1].dagster_event if records else None
        if event is None or run is None:
            return
        name = "offload_failure_alerts" if run.job_name == OFFLOAD_JOB else "nightly_failure_alerts"
        context = build_run_status_sensor_context(
            sensor_name=name, dagster_event=event, dagster_instance=self.instance, dagster_run=run,
        )
        self.defs.resolve_sensor_def(name)(context.for_run_failure())

    # -- operations on runs ---------------------------------------------------------------------

    def op_tick(self) -> str:
        from dagster import build_schedule_context

        schedule = self.defs.resolve_schedule_def("offload_every_15_minutes")
        context = build_schedule_context(
            instance=self.instance, scheduled_execution_time=datetime.now(UTC), repository_def=self.defs.get_repository_def()
        )
        from cold_assets.partitions import hour_of

        done = []
        for request in schedule.evaluate_tick(context).run_requests or []:
            tags = dict(request.tags or {})
            first, last = hour_of(tags["dagster/asset_partition_range_start"]), hour_of(tags["dagster/asset_partition_range_end"])
            hours = [first + timedelta(hours=h) for h in range(int((last - first) / timedelta(hours=1)) + 1)]
            done.append(self._run(self._keys(hours), tags=tags, why="tick"))
        return "; ".join(done) or "no request"

    def op_sensors(self) -> str:
        from dagster import build_sensor_context

        done = []
        for name in ("self_healing", "ttl_guard", "parity_alerts"):
            state = self.sensor_cursors.get(name)
            resources = {key: (self.defs.resources or {})[key] for key in ("clickhouse", "iceberg")}
            with build_sensor_context(
                instance=self.instance, cursor=state, resources=resources, definitions=self.defs,
            ) as context:
                result = self.defs.resolve_sensor_def(name)(context)
                self.sensor_cursors[name] = context.cursor
            requests = result if isinstance(result, list) else []
            for request in requests:
                if request.run_key in self.launched_run_keys:
                    self.tally.skipped["a sensor asked again for a run key Dagster already launched"] += 1
                    continue
                self.launched_run_keys.add(request.run_key or "")
                tables = [t for t in TABLES if any(k.path[-1] == t.cold for k in request.asset_selection or [])]
                tags = {**request.tags, "dagster/run_key": request.run_key or "", "dagster/sensor_name": name}
                done.append(self._run([request.partition_key], tables, replace_hour=True, tags=tags, why=name))
        return "; ".join(done) or "no repair requested"

    def _keys(self, hours: list[datetime]) -> list[str]:
        from cold_assets.partitions import partition_key_of

        return [partition_key_of(h) for h in hours]

    def op_backfill(self) -> str:
        first = self.rng.randrange(len(self.hours))
        last = min(len(self.hours) - 1, first + self.rng.randint(0, 8))
        return self._run(self._keys(self.hours[first : last + 1]), why="backfill")

    def op_repair(self) -> str:
        hour = self.rng.choice(self.hours)
        tables = self.rng.sample(list(TABLES), self.rng.randint(1, 3))
        return self._run(self._keys([hour]), tables, replace_hour=True, why="repair")

    # -- operations on the tiers ----------------------------------------------------------------

    def op_ttl(self) -> str:
        """Warm forgets its oldest hour, once cold holds it whole."""
        candidates = [h for h in self._open_hours() if h < hour_floor(datetime.now(UTC)) - timedelta(hours=2)]
        if not candidates:
            return "no hour old enough"
        hour = candidates[0]
        differing = self._differences(hour)
        if differing:
            self.tally.skipped["ttl: oldest hour not whole in cold yet"] += 1
            return f"{hour:%H:%M} not whole in cold yet ({differing[0]})"
        with self.warm.connect() as client:
            for spec in TABLES:
                if spec.gold_window == "1d":
                    continue  # a day's bar outlives its first hour
                client.command(
                    f"ALTER TABLE {spec.warm} DELETE WHERE {spec.time_column} >= {{lo:DateTime64(6, 'UTC')}}"
                    f" AND {spec.time_column} < {{hi:DateTime64(6, 'UTC')}}",
                    parameters={"lo": hour, "hi": hour + timedelta(hours=1)}, settings={"mutations_sync": 2},
                )
        self.forgotten.add(hour)
        return f"warm forgot {hour:%H:%M}"

    def op_restore(self) -> str:
        """An operator's mistaken delete in warm, then `cold-assets restore` of the hour: warm
        holds the hour as cold does again (cold held it whole, by the ledger), nothing doubled."""
        from cold_assets.hours import HourPolicy
        from cold_assets.recovery.restore import restore

        closed = [h for h in self._open_hours() if h < hour_floor(datetime.now(UTC)) - timedelta(hours=1)]
        if not closed:
            return "no closed hour"
        hour = self.rng.choice(closed)
        if self._differences(hour):
            self.tally.skipped["restore: hour not whole in cold yet"] += 1
            return f"{hour:%H:%M} not whole in cold yet"
        damaged = self.rng.sample([t for t in TABLES if t.gold_window != "1d"], self.rng.randint(1, 4))
        share = self.rng.choice((1, 2, 3))  # every row, or about a half or a third of them
        with self.warm.connect() as client:
            for spec in damaged:
                client.command(
                    f"ALTER TABLE {spec.warm} DELETE WHERE {spec.time_column} >= {{lo:DateTime64(6, 'UTC')}}"
                    f" AND {spec.time_column} < {{hi:DateTime64(6, 'UTC')}} AND cityHash64(toString({spec.time_column})) % {share} = 0",
                    parameters={"lo": hour, "hi": hour + timedelta(hours=1)}, settings={"mutations_sync": 2},
                )
            # The damaged tables (what an operator restores after a mistaken delete of theirs).
            report = restore(client, self.catalog, hour, hour + timedelta(hours=1), damaged, HourPolicy.from_settings(self.settings))
        assert report.audit is not None
        for parity in report.audit.parity:
            if table_by_cold_name(parity.table).gold_window == "1d":
                continue  # (the day's bar: the day's other hours may still be taking rows)
            self.tally.invariants["a restored hour is equal in both tiers"] += 1
            if not parity.content_matches:
                self._violate(
                    "restore leaves warm equal to cold",
                    f"{parity.table} {parity.partition_key}: warm {parity.warm_rows} rows, cold {parity.cold_rows} after the restore",
                )
        names = ", ".join(t.cold for t in damaged)
        return f"warm lost 1/{share} of {hour:%H:%M} in {names}; restored {report.rows_added} rows"

    def op_add_column(self) -> str:
        if self.added_columns >= MAX_ADDED_COLUMNS:
            return "enough columns added"
        self.added_columns += 1
        name = f"soak_col_{self.added_columns}"
        with self.warm.connect() as client:
            for table in ("trades_raw", "bronze_trades", "silver_trades"):
                client.command(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} String DEFAULT ''")
        return f"ADD COLUMN {name} String DEFAULT ''"

    def op_expiry(self) -> str:
        from pyiceberg.table.snapshots import ancestors_of

        from cold_assets.maintenance.operations import AncestorSnapshot, thinned_snapshots

        spec = self.rng.choice(list(TABLES))
        table = self.catalog.load_table(spec.cold_identifier)
        now = datetime.now(UTC)
        # Everything but the current snapshot, or thinned as the nightly thins its week, at a
        # minute's scale: every commit of the last seconds, then one a minute, the ancestry cut.
        thin = self.rng.random() < 0.5
        older_than = now - timedelta(minutes=self.rng.randint(2, 10)) if thin else now
        every_commit_after = now - timedelta(seconds=self.rng.randint(10, 90)) if thin else now
        if self.spark:
            from cold_assets.defs.nightly import EXPIRY_JOB

            result = self.defs.resolve_job_def(EXPIRY_JOB).execute_in_process(
                instance=self.instance,
                run_config={"ops": {"expire_snapshots_and_orphans": {"config": {
                    "tables": [spec.cold], "older_than": older_than.isoformat(), "every_commit_after": every_commit_after.isoformat(),
                    "then_one_per_minutes": 1, "orphan_age_days": 1, "parallel_tables": 1,
                }}}, "loggers": QUIET},
                raise_on_error=False,
            )
            self._after_run(result.run_id, result.success)
            return f"expiry{' thinned' if thin else ''} of {spec.cold} on Spark: {'ok' if result.success else 'FAILED'}"
        before = len(table.snapshots())
        ancestry = [AncestorSnapshot.of(a) for a in ancestors_of(table.current_snapshot(), table.metadata)]
        referenced = {ref.snapshot_id for ref in table.metadata.refs.values()}
        thinned = thinned_snapshots(ancestry, older_than, every_commit_after, timedelta(minutes=1), referenced)
        expiry = table.maintenance.expire_snapshots().older_than(older_than)
        if thinned:
            expiry = expiry.by_ids(thinned)
        expiry.commit()
        after = len(self.catalog.load_table(spec.cold_identifier).snapshots())
        return f"expiry{' thinned' if thin else ''} of {spec.cold}: {before} -> {after} snapshots"

    def op_compaction(self) -> str:
        if not self.spark:
            return "no Spark: skipped"
        from cold_assets.defs.nightly import COMPACTION_JOB

        spec = self.rng.choice(list(TABLES))
        result = self.defs.resolve_job_def(COMPACTION_JOB).execute_in_process(
            instance=self.instance,
            run_config={
                "ops": {"compact_cold_tables": {"config": {"tables": [spec.cold], "lookback_days": 1, "parallel_tables": 1}}},
                "loggers": QUIET,
            },
            raise_on_error=False,
        )
        self._after_run(result.run_id, result.success)
        return f"compaction of {spec.cold}: {'ok' if result.success else 'FAILED'}"

    def op_rollback(self) -> str:
        spec = self.rng.choice(list(TABLES))
        table = self.catalog.load_table(spec.cold_identifier)
        current = table.current_snapshot()
        if current is None or current.parent_snapshot_id is None or table.metadata.snapshot_by_id(current.parent_snapshot_id) is None:
            return f"{spec.cold}: nothing to roll back (no parent, or the expiry removed it)"
        before = {h: self._cold_bucket(spec, h) for h in self.forgotten}
        with table.manage_snapshots() as manage:
            manage.rollback_to_snapshot(current.parent_snapshot_id)
        if any(self._cold_bucket(spec, h) != rows for h, rows in before.items()):
            table = self.catalog.load_table(spec.cold_identifier)
            with table.manage_snapshots() as manage:
                manage.set_current_snapshot(current.snapshot_id)
            self.tally.skipped["rollback: would remove a forgotten hour's only copy"] += 1
            return f"{spec.cold}: rollback undone (it removed a forgotten hour's only copy)"
        self.rolled_back.add(spec.cold)
        return f"{spec.cold} rolled back to {current.parent_snapshot_id}"

    def op_federate(self) -> str:
        from cold_assets.federation import federate
        from cold_assets.hours import HourPolicy

        with self.warm.connect() as client:
            results = federate(client, self.catalog, HourPolicy.from_settings(self.settings))
        errors = [f"{r.view}: {r.error}" for r in results if r.error]
        return "federated" + (f", errors: {errors}" if errors else "")

    def op_audit(self) -> str:
        """`cold-assets audit` over a random range: an hour it finds equal must hold the
        ledger's rows, judged as the checks are (closed, settled by the audit's clock)."""
        from cold_assets.hours import HourPolicy
        from cold_assets.parity.audit import run_audit
        from cold_assets.parity.checksums import ParityBasis
        from cold_assets.partitions import hour_of
        from cold_assets.warm.read import warm_now

        first = self.rng.randrange(len(self.hours))
        start, end = self.hours[first], self.hours[self.rng.randrange(first, len(self.hours))] + timedelta(hours=1)
        with self.warm.connect() as client:
            line = warm_now(client) - self.settle_lag  # (the audit's own clock is a moment later)
            report = run_audit(client, self.catalog, start, end, None, HourPolicy.from_settings(self.settings))
        judged = 0
        for parity in report.parity:
            if parity.basis is not ParityBasis.WARM_HOUR or not parity.content_matches:
                continue
            spec, hour = table_by_cold_name(parity.table), hour_of(parity.partition_key)
            if hour in self.forgotten or spec.gold_window == "1d":
                continue
            if spec.mode is OffloadMode.APPEND and not self.ledger.bucket_settled(spec, hour, line):
                continue  # rows in flight: not judged
            judged += 1
            self.tally.invariants["an hour the audit finds equal agrees with the ledger"] += 1
            expected, found = self._expected_bucket(spec, hour), self._cold_bucket(spec, hour)
            if found != expected:
                self._violate(
                    "audit green, ledger differs",
                    f"{spec.cold} {parity.partition_key}: audit equal, cold {sum(found.values())} rows, ledger {sum(expected.values())}",
                )
        return f"audit {start:%H:%M}..{end:%H:%M}: {len(report.mismatches)} mismatched, {judged} equal hours judged"

    # -- the ledger against cold ------------------------------------------------------------------

    def _cold_rows(self, spec: MirroredTable) -> Counter:
        """The cold table's rows as the ledger keys them, read with pyiceberg (not the product's
        parity); read once per snapshot of the table."""
        table = self.catalog.load_table(spec.cold_identifier)
        snapshot = table.current_snapshot()
        key = (spec.cold, snapshot.snapshot_id if snapshot else None)
        if key not in self._cold_read:
            self._cold_read = {k: v for k, v in self._cold_read.items() if k[0] != spec.cold}
            self._cold_read[key] = self._read_cold(spec, table) if snapshot else Counter()
        return self._cold_read[key]

    def _expected_bucket(self, spec: MirroredTable, hour: datetime) -> Counter:
        lo, hi = spec.offload_range(hour)
        return Counter({k: n for k, n in self.ledger.expected(spec).items() if lo <= k[0] < hi})

    def _read_cold(self, spec: MirroredTable, table: Table) -> Counter:
        from cold_assets.soak.ledger import bar_key, raw_key, trade_key

        found: Counter = Counter()
        rows = table.scan().to_arrow().to_pylist()
        for r in rows:
            if spec.layer in (Layer.RAW, Layer.REJECTS):
                at = r["ingested_at"] if spec.layer is Layer.REJECTS else r["exchange_ts"]
                found[(hour_floor(at), raw_key(r["exchange"], r["symbol"], r["trade_id"], r["exchange_ts"], r["message"]))] += 1
            elif spec.layer is Layer.BRONZE:
                found[(hour_floor(r["exchange_ts"]), trade_key(r["exchange"], r["symbol"], r["trade_id"], r["exchange_ts"]))] += 1
            elif spec.layer is Layer.SILVER:
                key = trade_key(r["exchange"], r["exchange_symbol"], r["trade_id"], r["exchange_ts"])
                found[(hour_floor(r["exchange_ts"]), key)] += 1
            else:
                found[(r["window_start"], bar_key(r["exchange"], r["symbol"], r["window_start"], r["trade_count"]))] += 1
        return found

    def _cold_bucket(self, spec: MirroredTable, hour: datetime) -> Counter:
        lo, hi = spec.offload_range(hour)
        return Counter({k: n for k, n in self._cold_rows(spec).items() if lo <= k[0] < hi})

    def _differences(self, hour: datetime) -> list[str]:
        """Where cold differs from the ledger in `hour` (the daily bars' day left aside)."""
        out = []
        for spec in TABLES:
            if spec.gold_window == "1d":
                continue
            expected, found = self._expected_bucket(spec, hour), self._cold_bucket(spec, hour)
            if expected != found:
                out.append(f"{spec.cold}: cold {sum(found.values())} rows, ledger {sum(expected.values())}")
        return out

    def check_no_row_warm_never_had(self) -> None:
        """Cold holds nothing the ledger does not, and nothing twice (gold: a bar once, with at
        most the ledger's trades: an older state of the bar is allowed until it is replaced)."""
        for spec in TABLES:
            snapshot = self.catalog.load_table(spec.cold_identifier).current_snapshot()
            snapshot_id = snapshot.snapshot_id if snapshot else None
            if self.checked_snapshots.get(spec.cold, -1) == snapshot_id:
                continue
            self.checked_snapshots[spec.cold] = snapshot_id
            self.tally.invariants["cold holds no row warm never had, none twice"] += 1
            cold, ledger = self._cold_rows(spec), self.ledger.expected(spec)
            if spec.layer is Layer.GOLD:
                bars = {k[1][:4]: k[1][4] for k in ledger}
                seen: Counter = Counter(k[1][:4] for k in cold.elements())
                twice = [k for k, n in seen.items() if n > 1]
                unknown = [k for k in cold if k[1][:4] not in bars or k[1][4] > bars[k[1][:4]]]
                if twice or unknown:
                    self._violate("no row warm never had", f"{spec.cold}: bars twice {twice[:3]}, unknown or too many trades {unknown[:3]}")
                continue
            extra = cold - ledger
            if extra:
                sample = list(extra.items())[:3]
                self._violate("no row warm never had", f"{spec.cold}: {sum(extra.values())} rows not in the ledger or twice: {sample}")

    def _check_results_agree_with_ledger(self, run_id: str) -> None:
        from dagster import AssetCheckEvaluation, DagsterEventType

        from cold_assets.partitions import hour_of

        record_of_run = self.instance.get_run_record_by_id(run_id)
        if record_of_run is None:
            return
        # The run judged an append layer's closed hour on the rows settled by its own clock.
        line = record_of_run.create_timestamp.astimezone(UTC) - self.settle_lag
        for record in self.instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = record.dagster_event.event_specific_data if record.dagster_event else None
            if not isinstance(evaluation, AssetCheckEvaluation) or not evaluation.passed:
                continue
            spec = table_by_cold_name(evaluation.asset_key.path[-1])
            metadata = {k: v.value for k, v in evaluation.metadata.items()}
            hours = cast(list[str], metadata.get("hours", []))
            not_closed = set(cast(list[str], metadata.get("hours_open", []))) | set(cast(list[str], metadata.get("hours_cold_only", [])))
            for key in hours:
                hour = hour_of(key)
                if key in not_closed or hour in self.forgotten or spec.gold_window == "1d":
                    continue
                if spec.mode is OffloadMode.APPEND and not self.ledger.bucket_settled(spec, hour, line):
                    continue  # rows in flight at the run's clock: not judged by it
                self.tally.invariants["a green check agrees with the ledger"] += 1
                expected, found = self._expected_bucket(spec, hour), self._cold_bucket(spec, hour)
                if found != expected:
                    self._violate(
                        "green check, ledger differs",
                        f"{spec.cold} {key} {evaluation.check_name} passed in run {run_id}: cold {sum(found.values())} rows, "
                        f"ledger {sum(expected.values())}",
                    )

    def check_failures_alerted(self, final: bool) -> None:
        """Each failed run has its alert, delivered or waiting to be tried again (at the end:
        delivered), unless the previous finished run of the same job and hours failed too (the
        documented "none while it keeps failing")."""
        from cold_assets.defs.alerts import ALERT_TAG

        for run_id, what in self.failed_runs.items():
            run = self.instance.get_run_by_id(run_id)
            if run is None or self._repeats_a_failure(run):
                continue
            self.tally.invariants["every failure raised an alert"] += 1
            delivered = any(run_id in text for text in self.webhook.delivered)
            waiting = run.tags.get(ALERT_TAG) == "undelivered"
            if final and not delivered:
                self._violate("every failure raised an alert", f"run {run_id} ({what}): no alert delivered")
            elif not delivered and not waiting:
                self._violate("every failure raised an alert", f"run {run_id} ({what}): no alert sent or waiting")

    def _repeats_a_failure(self, run) -> bool:  # type: ignore[no-untyped-def]
        from dagster import DagsterRunStatus, RunsFilter

        tags = {k: v for k, v in run.tags.items() if k.startswith(("dagster/partition", "dagster/asset_partition_range"))}
        if not tags:
            return False
        earlier = [
            r for r in self.instance.get_run_records(filters=RunsFilter(job_name=run.job_name, tags=tags))
            if r.dagster_run.run_id != run.run_id and r.dagster_run.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)
            and r.create_timestamp < self.instance.get_run_record_by_id(run.run_id).create_timestamp  # type: ignore[union-attr]
        ]
        return bool(earlier) and max(earlier, key=lambda r: r.create_timestamp).dagster_run.status == DagsterRunStatus.FAILURE

    def _violate(self, invariant: str, detail: str) -> None:
        violation = Violation(self.seed, self.step, invariant, detail)
        self.tally.violations.append(violation)
        self.log(str(violation))

    # -- the run ------------------------------------------------------------------------------

    def setup(self) -> None:
        """The history: every hour of the window fed, and one backfill of it."""
        for hour in self.hours[:-1]:
            # Ingested when they happened, as a feed's history was.
            times = [hour + timedelta(seconds=self.rng.randint(0, 3599)) for _ in range(40)]
            self._insert([self._trade(at, at + timedelta(milliseconds=self.rng.randint(50, 3000))) for at in times])
        self.op_feed()
        self.log(self._run(self._keys(self.hours), why="history"))

    def one_step(self) -> str:
        self.step += 1
        if self.rng.random() < WEBHOOK_FLIP:
            self.webhook.up = not self.webhook.up
            self.tally.faults["webhook_down" if not self.webhook.up else "webhook_back"] += 1
        names, weights = zip(*OPERATIONS.items(), strict=True)
        name = self.rng.choices(names, weights)[0]
        self.tally.operations[name] += 1
        said = getattr(self, f"op_{name}")()
        self.check_no_row_warm_never_had()
        self.check_failures_alerted(final=False)
        return f"step {self.step} {name}: {said}"

    def drain(self) -> None:
        """Faults off, every row settled, then what production does next: the schedule's tick,
        the sensors' repairs until they request nothing, and the runbook's backfill after a
        rollback. Then every row the ledger holds must be in cold exactly once."""
        from cold_assets.defs.alerts import retry_run_alerts

        saved = dict(FAULTS)
        FAULTS.update(dict.fromkeys(FAULTS, 0.0))
        try:
            self.webhook.up = True
            newest = max(m.ingested_at for m in self.ledger.messages)
            time.sleep(max(0.0, (newest + self.settle_lag + timedelta(seconds=2) - datetime.now(UTC)).total_seconds()))
            self.log(self.op_tick())
            if self.rolled_back:
                tables = [t for t in TABLES if t.cold in self.rolled_back]
                self.log(self._run(self._keys(self._open_hours()), tables, why="runbook backfill after rollback"))
            for _ in range(5):
                said = self.op_sensors()
                self.log(f"drain: {said}")
                if said == "no repair requested":
                    break
            from cold_assets.defs.alerts import Alerter

            retry_run_alerts(self.instance, Alerter.from_env(), _quiet_logger())
            self.op_sensors()  # parity_alerts delivers what waited in its cursor
        finally:
            FAULTS.update(saved)
        self.check_no_row_warm_never_had()
        self.check_failures_alerted(final=True)
        window = (self.hours[0], hour_floor(datetime.now(UTC)))
        for spec in TABLES:
            self.tally.invariants["every settled row is in cold exactly once, forgotten hours too"] += 1
            expected, found = self.ledger.expected(spec, window), self._cold_rows(spec)
            missing, extra = expected - found, found - expected
            if missing or extra:
                self._violate(
                    "every settled row in cold exactly once",
                    f"{spec.cold}: {sum(missing.values())} missing (e.g. {list(missing)[:2]}), "
                    f"{sum(extra.values())} extra (e.g. {list(extra)[:2]})",
                )

    def close(self) -> None:
        self.webhook.close()


def _quiet_logger():  # type: ignore[no-untyped-def]
    import logging

    return logging.getLogger("cold_assets.soak")


# What a seed needs after its last step: the settle lag, the tick, the sensors' repairs.
DRAIN_SECONDS = 45.0


def run_seed(seed: int, steps: int, seconds: float, hours: int, spark: bool, log: Callable[[str], None]) -> Tally:
    """One seed, in this process (a process opens one embedded warm tier: one seed each).
    `seconds` bounds the whole seed: the steps stop in time for the drain."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"cold-soak-{seed}-") as home:
        soak = Soak(seed, Path(home), hours, spark, log)
        try:
            soak.setup()
            log(f"seed {seed}: history offloaded in {time.monotonic() - started:.0f} s")
            deadline = started + seconds - DRAIN_SECONDS
            while soak.step < steps and time.monotonic() < deadline:
                log(soak.one_step())
            drain_started = time.monotonic()
            soak.drain()
            log(f"seed {seed}: {soak.step} steps, drained in {time.monotonic() - drain_started:.0f} s, "
                f"{time.monotonic() - started:.0f} s in all")
        except Exception as error:  # noqa: BLE001 - a crash of the soak is a violation with its seed
            import traceback

            log(traceback.format_exc())
            soak._violate("the soak ran to the end", f"{type(error).__name__}: {error}")
        finally:
            soak.close()
        return soak.tally


TALLY_LINE = "TALLY "


def soak(
    seeds: list[int], steps: int, minutes: float | None, hours: int, spark: bool,
    log: Callable[[str], None] = print, child_errors: bool = False, parallel: int = 1,
) -> Tally:
    """Runs each seed in a child process of its own, `parallel` at a time; `minutes` bounds
    the whole soak (each round of seeds gets its share of what is left)."""
    total = Tally()
    started = time.monotonic()
    rounds = [seeds[i : i + parallel] for i in range(0, len(seeds), parallel)]
    for n, round_seeds in enumerate(rounds):
        budget = (minutes * 60 - (time.monotonic() - started)) / (len(rounds) - n) if minutes else 10 * 24 * 3600.0
        with ThreadPoolExecutor(max_workers=len(round_seeds)) as pool:
            futures = [pool.submit(_run_child, seed, steps, budget, hours, spark, log, child_errors) for seed in round_seeds]
            for future in futures:
                total.merge(future.result())
    return total


def _run_child(
    seed: int, steps: int, budget: float, hours: int, spark: bool, log: Callable[[str], None], child_errors: bool
) -> Tally:
    log(f"seed {seed}: up to {steps} steps" + (f", {budget:.0f} s" if budget < 10 * 24 * 3600 else ""))
    arguments = json.dumps({"seed": seed, "steps": steps, "seconds": budget, "hours": hours, "spark": spark})
    child = subprocess.Popen(
        [sys.executable, "-m", "cold_assets.soak.driver", arguments], stdout=subprocess.PIPE, text=True, bufsize=1,
        # Dagster's own warnings of the runs the soak breaks on purpose; --verbose shows them.
        stderr=None if child_errors else subprocess.DEVNULL,
    )
    tally = None
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith(TALLY_LINE):
            tally = _tally_from_json(line[len(TALLY_LINE):])
        else:
            log(line.rstrip("\n"))
    child.wait()
    if tally is None:
        tally = Tally(violations=[Violation(seed, 0, "the soak ran to the end", f"the seed's process exited {child.returncode}")])
        log(str(tally.violations[0]))
    return tally


def _tally_to_json(tally: Tally) -> str:
    return json.dumps({
        "operations": tally.operations, "faults": tally.faults, "invariants": tally.invariants, "skipped": tally.skipped,
        "violations": [v.__dict__ for v in tally.violations],
    })


def _tally_from_json(text: str) -> Tally:
    data = json.loads(text)
    return Tally(
        Counter(data["operations"]), Counter(data["faults"]), Counter(data["invariants"]), Counter(data["skipped"]),
        [Violation(**v) for v in data["violations"]],
    )


def summary(tally: Tally, seeds: list[int]) -> str:
    lines = [f"soak: seeds {', '.join(map(str, seeds))}"]
    lines.append("operations: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.operations.items())))
    lines.append("faults: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.faults.items())))
    lines.append("invariants checked: " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.invariants.items())))
    if tally.skipped:
        lines.append("skipped: " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.skipped.items())))
    lines.append(f"violations: {len(tally.violations)}")
    lines += [f"  {v}" for v in tally.violations]
    return "\n".join(lines)



if __name__ == "__main__":  # one seed in a child process (soak() runs it): log lines, then the tally
    args = json.loads(sys.argv[1])
    result = run_seed(args["seed"], args["steps"], args["seconds"], args["hours"], args["spark"], lambda line: print(line, flush=True))
    print(TALLY_LINE + _tally_to_json(result), flush=True)
