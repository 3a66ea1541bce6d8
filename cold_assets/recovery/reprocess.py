"""Reprocess: bronze, silver and gold recomputed from cold raw with the medallion's DDL.

Day by day, cold raw's rows of the day (by exchange time, late ones included) go into a
scratch medallion (an embedded chDB of its own, with the same DDL and materialized views,
its TTLs set past the day): inserted as one block in arrival order (ingestion time, then
receive time), so that silver's insert-time dedup keeps the first delivery of each trade as
the live medallion did. Each derived table's hours are then compared with cold (the parity
checksums), and the hours that differ are replaced through the offload's own protocol from
the scratch medallion (one commit per checkpoint, each hour's bookkeeping in it, the commit
marked `cold-assets.source = reprocess`), as a declared replacement: rows the new logic no
longer makes go. An hour that does not differ is left as it is.

The scratch parses by warm's reference data as it is now (feed limits, instruments): a limit
changed since the day was ingested applies to it too. Silver's dedup then sees the whole day
at once: a redelivery more than a day after its first delivery, which live silver took as a
new row (its anti-join looks back a day of ingestion), is dropped by the reprocess; one filed
under another day (a different exchange time) stays, as it did live.

A day is replaced only when safe (see `reprocess`): otherwise the run stops there.

Days warm still holds are reprocessed too, once no trade of theirs can still arrive
(feed_limits.max_lateness after them): warm's rows (the earlier logic) and cold's new ones then
differ by design. The run reports them (warm's rows against the new cold rows), and marks each
such hour reprocessed in its commit (offload/reprocessed.py): the offload, the checks, the
sensors, the audit and the federated views then take cold's rows as the hour's until warm's
TTL drops it. What warm holds is read before the scratch opens (`read_warm_held`); cold raw
must equal warm raw on those days, or the run is refused (a gap in raw's offload would
otherwise be reprocessed as if the trades never happened).
"""

import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from cold_assets.cold.ranges import range_filter
from cold_assets.hours import HourPolicy, HourStatus
from cold_assets.offload.bookkeeping import OffloadSource
from cold_assets.offload.protocol import offload_partitions
from cold_assets.offload.reprocessed import Mark, set_marks
from cold_assets.parity.checksums import (
    HourParity,
    cold_checksums,
    fingerprint,
    parse_fingerprint,
    partitions_parity,
    warm_fingerprints,
)
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.recovery.staging import copy_cold_rows
from cold_assets.tables import TABLES, Layer, MirroredTable, table_by_cold_name
from cold_assets.warm.ddl import WarmLimits, warm_statements
from cold_assets.warm.read import WarmColumn, identifier, read_columns, read_query, render, warm_now, warm_read_query

RAW = table_by_cold_name("raw_trades")
DERIVED: tuple[MirroredTable, ...] = tuple(t for t in TABLES if t.layer in (Layer.BRONZE, Layer.SILVER, Layer.GOLD))
SAMPLE_ROWS = 3  # changed rows shown per table, each way
STAGED_RAW = "_cold_reprocess_raw"
STAGED_BRONZE_KEYS = "_cold_reprocess_bronze_keys"
BRONZE = table_by_cold_name("bronze_trades")
# Tables the scratch keeps between days: its reference data.
REFERENCE_TABLES = ("instruments", "feed_limits")


class ReprocessRefused(ValueError):
    """The range cannot be reprocessed (trades of it may still arrive, cold raw differs from
    warm's, not whole days, empty)."""


@dataclass
class TableChange:
    """One derived table over the range: the hours whose rows the new logic changes."""

    table: str
    hours_compared: int = 0
    hours_changed: list[str] = field(default_factory=list)
    rows_before: int = 0  # cold's rows in the changed hours
    rows_after: int = 0  # the reprocess's rows in the changed hours
    removed: list[str] = field(default_factory=list)  # a sample of rows that go
    added: list[str] = field(default_factory=list)  # and of rows that come
    hours_replaced: int = 0  # committed (0 in a dry run)
    # Of the hours warm still holds: those whose new rows differ from warm's (marked
    # reprocessed when replaced), and warm's rows and the new rows in them.
    hours_unequal_to_warm: list[str] = field(default_factory=list)
    warm_rows: int = 0
    new_rows: int = 0


@dataclass
class ReprocessReport:
    start: datetime
    end: datetime
    dry_run: bool
    raw_rows: int = 0
    changes: dict[str, TableChange] = field(default_factory=dict)
    days_replaced: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the run stopped at a day (its days before stay replaced)

    @property
    def hours_changed(self) -> int:
        return sum(len(c.hours_changed) for c in self.changes.values())


@dataclass(frozen=True)
class ReferenceData:
    """What warm's medallion holds beside its DDL and parses by, copied into the scratch: the
    feed's limits in force, and the instruments (operators add to both)."""

    feed_limits: dict[str, int]
    instruments: list[tuple]


def read_reference_data(client: Client) -> ReferenceData:
    limits = {str(name): int(seconds) for name, seconds in client.query(render("feed_limits_now")).result_rows}
    return ReferenceData(limits, [tuple(row) for row in client.query(render("instruments_now")).result_rows])


@dataclass(frozen=True)
class WarmHeld:
    """What warm holds of a reprocess's range, read before the scratch opens (an embedded warm
    tier and the scratch are a chDB each, one open at a time): per derived table, the
    fingerprint ("rows:checksum", over the cold schema by parity's rules) of each offload range
    warm still holds, by its key, and warm's columns those rules came from. A range absent is
    not warm's (older than its retention)."""

    fingerprints: dict[str, dict[str, str]] = field(default_factory=dict)
    columns: dict[str, list[WarmColumn] | None] = field(default_factory=dict)

    def of(self, spec: MirroredTable, key: str) -> str | None:
        return self.fingerprints.get(spec.cold, {}).get(key)


@dataclass(frozen=True)
class WarmReading:
    """What a reprocess reads of warm before its scratch opens: warm's clock, its reference
    data, and what it holds of the range."""

    now: datetime
    reference: ReferenceData
    held: WarmHeld


def read_warm(
    client: Client, catalog: Catalog, start: datetime, end: datetime, policy: HourPolicy, limits: WarmLimits
) -> WarmReading:
    """`client`: the warm tier. Refuses a range that cannot be reprocessed before reading it."""
    now, reference = warm_now(client), read_reference_data(client)
    check_range(start, end, now, policy, max_lateness_of(reference, limits))
    return WarmReading(now, reference, read_warm_held(client, catalog, start, end, now, policy))


def max_lateness_of(reference: ReferenceData | None, limits: WarmLimits) -> timedelta:
    """How late a trade of a day may still arrive: the feed's max_lateness in force (warm's
    feed_limits), or the cap the settings allow it (a day inside COLD_TTL_MARGIN_DAYS), whichever
    is later: an operator may raise the limit up to the cap at any time, and a trade it then
    lets in would reach warm's derived rows of a reprocessed hour and not cold's."""
    cap = timedelta(days=limits.max_lateness_days)
    if reference is not None and "max_lateness" in reference.feed_limits:
        return max(timedelta(seconds=reference.feed_limits["max_lateness"]), cap)
    return cap


def settled_until(now: datetime, policy: HourPolicy, max_lateness: timedelta) -> datetime:
    """The midnight before which no trade can still reach warm's derived layers: a trade later
    than max_lateness after its exchange time is a reject (bronze's parse), filed under its
    ingestion time; and a day warm no longer holds is never read from warm again."""
    def midnight(t: datetime) -> datetime:
        return t.replace(hour=0, minute=0, second=0, microsecond=0)

    cold_only_until = midnight(policy.warm_horizon(now) + timedelta(hours=1))  # (a day whose last hour is cold-only)
    return max(midnight(now - max_lateness - policy.settle_lag - policy.late_grace), cold_only_until)


def check_range(start: datetime, end: datetime, now: datetime, policy: HourPolicy, max_lateness: timedelta) -> None:
    for name, value in (("--from", start), ("--to", end)):
        if value != value.replace(hour=0, minute=0, second=0, microsecond=0):
            raise ReprocessRefused(f"{name} {value.isoformat()} is not a midnight (UTC): the daily bars are reprocessed whole")
    if end <= start:
        raise ReprocessRefused(f"the range is empty: from {start.isoformat()} to {end.isoformat()}")
    until = settled_until(now, policy, max_lateness)
    if end > until:
        raise ReprocessRefused(
            f"--to {end.isoformat()} reaches days that can still take trades (up to {max_lateness.total_seconds():.0f} s "
            "late: feed_limits.max_lateness, or the most COLD_TTL_MARGIN_DAYS lets it be raised to): their new rows "
            f"would miss the trades still to come, which warm would take and cold not. Reprocess up to {until.isoformat()}"
        )


def read_warm_held(
    client: Client, catalog: Catalog, start: datetime, end: datetime, now: datetime, policy: HourPolicy
) -> WarmHeld:
    """The fingerprints of the derived ranges of [start, end) warm still holds (`client`: the
    warm tier). Refuses the range where cold raw differs from warm raw on those days."""
    held = WarmHeld()
    hours = [start + timedelta(hours=h) for h in range(int((end - start) / timedelta(hours=1)))]
    raw_keys = [partition_key_of(h) for h in hours if policy.status(RAW, h, now) is HourStatus.CLOSED]
    if raw_keys:
        parities = partitions_parity(client, catalog.load_table(RAW.cold_identifier), RAW, raw_keys, True, now=now, policy=policy)
        unequal = [p for p in parities if not (p.content_checked and p.content_matches)]
        if unequal:
            first = unequal[0]
            raise ReprocessRefused(
                f"cold raw differs from warm raw in {len(unequal)} hours warm still holds (first {first.partition_key}: "
                f"warm {first.warm_rows} rows, cold {first.cold_rows}"
                f"{'' if first.content_checked else ', content not comparable'}): the reprocess would rebuild those "
                "days without what cold raw lacks. Let the offload (or the self-healing sensor) bring raw level first"
            )
    for spec in DERIVED:
        starts = sorted({spec.offload_range(h)[0] for h in hours if policy.status(spec, h, now) is HourStatus.CLOSED})
        if not starts:
            continue
        cold_table = catalog.load_table(spec.cold_identifier)
        columns = read_columns(client, spec, cold_table.schema())
        query = warm_read_query(client, spec, columns, starts[0], spec.offload_range(starts[-1])[1])
        found = warm_fingerprints(client, cold_table, spec, query, columns)
        held.fingerprints[spec.cold] = {partition_key_of(s): found.get(int(s.timestamp()), "0:0") for s in starts}
        held.columns[spec.cold] = columns
    return held


def days_of(start: datetime, end: datetime) -> list[datetime]:
    return [start + timedelta(days=d) for d in range((end - start).days)]


# Opens an embedded chDB at a path (ClickHouseResource(chdb_path=...).connect, from the caller).
OpenScratch = Callable[[Path], AbstractContextManager[Client]]


def reprocess(
    catalog: Catalog,
    open_scratch: OpenScratch,
    scratch: Path,
    start: datetime,
    end: datetime,
    run_id: str,
    limits: WarmLimits,
    now: datetime,
    policy: HourPolicy,
    ddl: Path | None = None,
    dry_run: bool = False,
    checkpoint_hours: int = 24,
    reference: ReferenceData | None = None,
    log: Callable[[str], None] | None = None,
    warm_held: WarmHeld | None = None,
) -> ReprocessReport:
    """Reprocesses the days of [start, end) into cold (see the module docstring). `scratch`
    is a folder of its own for the scratch medallion (opened with `open_scratch`), removed after; `ddl` the ClickHouse DDL
    folder (default: the project's); `now` and `policy` the warm tier's clock and hour rules,
    which decide what warm still holds; `reference` warm's feed limits and instruments
    (read_reference_data; default: the DDL's own). `log` gets each day's comparison before
    any of its hours is replaced. `warm_held`: what warm holds of the range (read_warm_held),
    required where warm still holds some of it.

    A day that cannot be reprocessed safely stops the run there (`report.stopped` says why;
    the days before it stay replaced): the new logic would empty a table, cold raw lacks
    messages cold bronze has, or the tiers' content cannot be compared."""
    check_range(start, end, now, policy, max_lateness_of(reference, limits))
    if warm_held is None and policy.status(RAW, end - timedelta(hours=1), now) is not HourStatus.COLD_ONLY:
        raise ValueError("warm still holds part of the range: read_warm_held must be given")
    warm_held = warm_held or WarmHeld()
    report = ReprocessReport(start, end, dry_run, changes={t.cold: TableChange(t.cold) for t in DERIVED})
    # The scratch's TTLs reach past the oldest day (DateTime's range ends in 2106).
    retention = max(limits.retention_days, (datetime.now(UTC) - start).days + 2)
    with _scratch_medallion(open_scratch, scratch, WarmLimits(retention, limits.max_lateness_days), ddl) as client:
        if reference is not None:
            for name, seconds in reference.feed_limits.items():
                client.command(
                    "INSERT INTO feed_limits (name, seconds) VALUES ({name:String}, {seconds:Int64})",
                    parameters={"name": name, "seconds": seconds},
                )
            client.command("TRUNCATE TABLE instruments")
            client.insert(
                "instruments", reference.instruments,
                column_names=["exchange", "exchange_symbol", "symbol", "base_asset", "quote_asset", "tick_size", "lot_size"],
            )
        for day in days_of(start, end):
            report.raw_rows += _load_raw(client, catalog, day)
            scratch_now = warm_now(client)
            # Every hour of the day is closed and settled in the scratch: it holds them whole.
            scratch_policy = HourPolicy(
                settle_lag=timedelta(0), late_grace=timedelta(0), warm_retention=scratch_now - day + timedelta(days=1)
            )
            keys = [partition_key_of(day + timedelta(hours=h)) for h in range(24)]
            # Every table of the day is compared (and reported) before any is replaced; the tables
            # as they were then serve the comparison, warm's and the marks (the replace loads its own).
            before = {spec: catalog.load_table(spec.cold_identifier) for spec in DERIVED}
            compared = {spec: _compare(client, before[spec], spec, keys, scratch_now, scratch_policy, report) for spec in DERIVED}
            if log is not None:
                log(format_day(day, compared))
            report.stopped = _unsafe(client, catalog, day, compared)
            if report.stopped is not None:
                break
            unequal = {
                spec: _against_warm(client, before[spec], spec, parities, warm_held, report)
                for spec, parities in compared.items()
            }
            if not dry_run:
                for spec, parities in compared.items():
                    marks = _marks(client, before[spec], spec, unequal[spec], warm_held)
                    changed = [p for p in parities if not p.content_matches]
                    _replace(client, catalog, spec, changed, run_id, scratch_now, scratch_policy, report, checkpoint_hours, marks)
                    # The hours left as they were: marked where cold's rows (the new ones) differ
                    # from warm's, cleared where they equal them.
                    set_marks(catalog.load_table(spec.cold_identifier), {
                        p.partition_key: marks.get(hour_of(p.partition_key))
                        for p in parities if p.content_matches and warm_held.of(spec, p.partition_key) is not None
                    })
                report.days_replaced.append(f"{day:%Y-%m-%d}")
            _clear_day(client)
    return report


def _unsafe(client: Client, catalog: Catalog, day: datetime, compared: Mapping[MirroredTable, list[HourParity]]) -> str | None:
    """Why the day must not be replaced (None: it may)."""
    unchecked = [spec.cold for spec, parities in compared.items() if any(not p.content_checked for p in parities)]
    if unchecked:
        return (
            f"{day:%Y-%m-%d}: the content of {', '.join(unchecked)} could not be compared (counts only): a changed value "
            "would go unseen"
        )
    emptied = [
        spec.cold for spec, parities in compared.items()
        if sum(p.warm_rows for p in parities) == 0 and sum(p.cold_rows for p in parities) > 0
    ]
    if emptied:
        return (
            f"{day:%Y-%m-%d}: the new logic would empty {', '.join(emptied)} (it keeps none of the day's rows). A parse "
            "that rejects everything (feed limits, a broken view) is more likely than a logic that means it"
        )
    missing = _raw_gaps(client, catalog, day)
    if missing:
        return (
            f"{day:%Y-%m-%d}: cold raw lacks the messages of {missing} trades cold bronze holds (a gap in raw's offload): "
            "reprocessing would delete them from bronze, silver and gold, where they may be the only copy"
        )
    return None


def _raw_gaps(client: Client, catalog: Catalog, day: datetime) -> int:
    """Trades cold bronze holds for the day whose message is not in cold raw (the scratch's raw)."""
    staged = identifier(STAGED_BRONZE_KEYS)
    client.command(f"DROP TABLE IF EXISTS {staged}")
    client.command(f"CREATE TABLE {staged} (exchange String, symbol String, trade_id UInt64) ENGINE = MergeTree ORDER BY tuple()")
    copy_cold_rows(client, catalog, BRONZE, staged, day, day + timedelta(days=1), ["exchange", "symbol", "trade_id"])
    missing = int(client.query(render("reprocess_raw_gaps", bronze_keys=staged, raw=identifier(RAW.warm))).result_rows[0][0])
    client.command(f"DROP TABLE {staged}")
    return missing


def _compare(
    client: Client, cold_table: Table, spec: MirroredTable, keys: list[str], now: datetime, policy: HourPolicy,
    report: ReprocessReport,
) -> list[HourParity]:
    """The day's hours of `spec`, scratch against cold; those that differ are reported (with a sample)."""
    change = report.changes[spec.cold]
    if spec.gold_window == "1d":
        keys = keys[:1]  # the day is one range
    # Against cold's rows, every hour: a reprocessed one too (not against its mark).
    parities = partitions_parity(client, cold_table, spec, keys, content=True, now=now, policy=policy, reprocessed_by_mark=False)
    changed = [p for p in parities if not p.content_matches]
    change.hours_compared += len(parities)
    change.hours_changed += [p.partition_key for p in changed]
    change.rows_before += sum(p.cold_rows for p in changed)
    change.rows_after += sum(p.warm_rows for p in changed)
    if changed and len(change.removed) + len(change.added) == 0:
        change.removed, change.added = _sample(client, cold_table, spec, changed[0].partition_key)
    return parities


def _against_warm(
    client: Client, cold_table: Table, spec: MirroredTable, parities: list[HourParity], warm_held: WarmHeld, report: ReprocessReport
) -> list[HourParity]:
    """The hours warm still holds whose new rows differ from warm's, by the rules warm's own
    parity takes (its columns': one warm lacks is not compared, a DEFAULT is taken for NULL),
    reported."""
    held = [p for p in parities if warm_held.of(spec, p.partition_key) is not None]
    if not held:
        return []
    starts = sorted(spec.offload_range(hour_of(p.partition_key))[0] for p in held)
    query = warm_read_query(client, spec, read_columns(client, spec, cold_table.schema()), starts[0], spec.offload_range(starts[-1])[1])
    new = warm_fingerprints(client, cold_table, spec, query, warm_held.columns.get(spec.cold))
    change = report.changes[spec.cold]
    unequal = []
    for p in held:
        warm = warm_held.of(spec, p.partition_key)
        if warm is not None and warm != new.get(int(hour_of(p.partition_key).timestamp()), "0:0"):
            unequal.append(p)
            change.hours_unequal_to_warm.append(p.partition_key)
            change.warm_rows += parse_fingerprint(warm)[0]
            change.new_rows += p.warm_rows
    return unequal


def _marks(
    client: Client, cold_table: Table, spec: MirroredTable, parities: list[HourParity], warm_held: WarmHeld
) -> dict[datetime, Mark]:
    """The marks of these hours (by range start) as the parity of a marked hour compares them:
    over cold's schema as it is now, with no warm column's rule. An hour the reprocess replaces
    gets its scratch rows' fingerprint (what it writes); an hour it leaves as it is, cold's
    own (its rows equal the scratch's by the comparison's rules, which skip a column warm
    lacks and take a DEFAULT for NULL: cold's values are what stays)."""
    schema_id = cold_table.metadata.current_schema_id
    marks: dict[datetime, Mark] = {}
    for replaced in (True, False):
        starts = sorted(spec.offload_range(hour_of(p.partition_key))[0] for p in parities if p.content_matches is not replaced)
        if not starts:
            continue
        end = spec.offload_range(starts[-1])[1]
        if replaced:
            query = warm_read_query(client, spec, read_columns(client, spec, cold_table.schema()), starts[0], end)
            found = warm_fingerprints(client, cold_table, spec, query, None)
        else:
            held = cold_checksums(client, cold_table, spec, starts[0], end)
            found = {bucket: fingerprint(rows, digest) for bucket, (rows, digest) in held.items()}
        marks |= {
            start: Mark(found.get(int(start.timestamp()), "0:0"), schema_id, warm_held.of(spec, partition_key_of(start)) or "0:0")
            for start in starts
        }
    return marks


def _replace(
    client: Client, catalog: Catalog, spec: MirroredTable, changed: list[HourParity], run_id: str, now: datetime,
    policy: HourPolicy, report: ReprocessReport, checkpoint_hours: int, marked: dict[datetime, Mark],
) -> None:
    """The changed hours replaced from the scratch, through the offload's protocol; those of
    `marked` (warm holds them, with other rows) marked reprocessed."""
    if not changed:
        return
    checkpoints = offload_partitions(
        client, catalog.load_table(spec.cold_identifier), spec, [p.partition_key for p in changed], run_id,
        settle_lag=timedelta(0), replace_hour=True, allow_fewer_rows=True, warm_retention=policy.warm_retention,
        now=now, checkpoint_hours=checkpoint_hours, source=OffloadSource.REPROCESS, marked=marked,
    )
    for checkpoint in checkpoints:
        if checkpoint.refused:  # (allow_fewer_rows: a replace is never refused; said loudly if it is)
            raise RuntimeError(f"reprocess of {spec.cold}: {checkpoint.refused[0]}")
        report.changes[spec.cold].hours_replaced += len(checkpoint.results)


def _sample(client: Client, cold_table: Table, spec: MirroredTable, partition_key: str) -> tuple[list[str], list[str]]:
    """A few rows of one changed hour that go, and that come (as the offload reads them)."""
    start, end = spec.offload_range(hour_of(partition_key))
    query = read_query(spec, read_columns(client, spec, cold_table.schema()), start, end)
    new = client.query_arrow(query.sql, parameters=query.parameters)
    old = cold_table.scan(row_filter=range_filter(spec.time_column, start, end), selected_fields=tuple(new.schema.names)).to_arrow()

    def rows(table: pa.Table) -> Counter:
        return Counter(tuple(str(v) for v in r.values()) for r in table.select(new.schema.names).to_pylist())

    before, after = rows(old), rows(new)
    name = ", ".join(new.schema.names)
    removed = [f"({name}) = {r}" for r in list((before - after).elements())[:SAMPLE_ROWS]]
    added = [f"({name}) = {r}" for r in list((after - before).elements())[:SAMPLE_ROWS]]
    return removed, added


@contextmanager
def _scratch_medallion(open_scratch: OpenScratch, scratch: Path, limits: WarmLimits, ddl: Path | None) -> Iterator[Client]:
    if scratch.exists():
        shutil.rmtree(scratch)  # a scratch left by a reprocess that was killed
    scratch.mkdir(parents=True)
    try:
        with open_scratch(scratch / "chdb") as client:
            for statement in warm_statements(limits, ddl):
                client.command(statement)
            yield client
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _load_raw(client: Client, catalog: Catalog, day: datetime) -> int:
    """Cold raw's rows of the day into the scratch's trades_raw, as one block in arrival order,
    through the materialized views; returns how many."""
    staged = identifier(STAGED_RAW)
    client.command(f"DROP TABLE IF EXISTS {staged}")
    client.command(f"CREATE TABLE {staged} AS {identifier(RAW.warm)} ENGINE = MergeTree ORDER BY tuple()")
    wanted = [c.name for c in read_columns(client, RAW) or []]
    copied = copy_cold_rows(client, catalog, RAW, staged, day, day + timedelta(days=1), wanted)
    columns, rows = copied.columns, copied.rows
    if rows:
        listed = ", ".join(identifier(c) for c in columns)
        # One block (the views see the day at once, as silver's LIMIT 1 BY needs), in arrival order.
        block = {"max_block_size": rows + 1, "min_insert_block_size_rows": rows + 1,
                 "min_insert_block_size_bytes": 0, "max_insert_threads": 1, "max_threads": 1}
        client.command(
            f"INSERT INTO {identifier(RAW.warm)} ({listed}) SELECT {listed} FROM {staged} ORDER BY ingested_at, received_at",
            settings=block,
        )
    client.command(f"DROP TABLE {staged}")
    return rows


def _clear_day(client: Client) -> None:
    """Empties the scratch's medallion for the next day (its reference data stays)."""
    names = client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'"
    ).result_rows
    for (name,) in names:
        if name not in REFERENCE_TABLES:
            client.command(f"TRUNCATE TABLE {identifier(str(name))}")


def format_day(day: datetime, compared: Mapping[MirroredTable, list[HourParity]]) -> str:
    """One day's comparison, before any of it is replaced: per table, hours changed, rows before and after."""
    parts = []
    for spec, parities in compared.items():
        changed = [p for p in parities if not p.content_matches]
        if changed:
            before, after = sum(p.cold_rows for p in changed), sum(p.warm_rows for p in changed)
            parts.append(f"{spec.cold} {len(changed)} hours ({before} -> {after} rows)")
    return f"{day:%Y-%m-%d}: " + ("; ".join(parts) if parts else "nothing changes")


def format_reprocess(report: ReprocessReport) -> str:
    what = "would replace" if report.dry_run else "replaced"
    lines = [
        f"reprocess {report.start.isoformat()} .. {report.end.isoformat()} from {report.raw_rows} cold raw rows"
        + (" (dry run: nothing written)" if report.dry_run else ""),
        "",
        f"  {'table':<16} {'hours':>6} {'changed':>8} {'rows before':>12} {'rows after':>11}",
    ]
    for c in report.changes.values():
        lines.append(f"  {c.table:<16} {c.hours_compared:>6} {len(c.hours_changed):>8} {c.rows_before:>12} {c.rows_after:>11}")
    for c in report.changes.values():
        for row in c.removed:
            lines.append(f"  {c.table} - {row}")
        for row in c.added:
            lines.append(f"  {c.table} + {row}")
    for c in report.changes.values():
        if c.hours_unequal_to_warm:
            lines.append(
                f"  {c.table}: {len(c.hours_unequal_to_warm)} hours warm still holds differ from the new rows (warm "
                f"{c.warm_rows} rows, new {c.new_rows}): left unequal by design, marked reprocessed, until warm's TTL drops them"
            )
    lines.append("")
    replaced = sum(c.hours_replaced for c in report.changes.values())
    lines.append(f"{report.hours_changed} table-hours change; {replaced if not report.dry_run else report.hours_changed} {what}")
    if report.stopped:
        done = ", ".join(report.days_replaced) or "none"
        lines.append(f"STOPPED at {report.stopped}; days replaced before it: {done}")
    return "\n".join(lines)
