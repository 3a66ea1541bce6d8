"""Restore: warm's rows back from cold, for hours inside warm's retention.

Each layer comes back from its own cold table (bronze, silver and gold are not derived
again), and only what warm lacks comes back, so that nothing warm holds is doubled or lost:
- append layers (raw, rejects, bronze): each row cold holds more often than warm does, as
  often as the difference (a feed's redeliveries are rows of their own);
- silver: the rows whose key warm does not hold (warm's own row of a key stays);
- gold: the bars whose window warm does not hold, as the aggregate states warm keeps, from
  cold's values, the open and close keyed by the first and last trade of the window in
  cold silver (restore_missing_bars.sql says why). A window whose warm bar lost trades
  (fewer than cold's, or not adding up to the two tiers' silver: warm lost the bar and took
  new trades of it since) gets cold's bar added to its states where the two bars are proven
  to count disjoint trades (restore_classify_bars.sql): the merge is the bar an unbroken
  warm tier holds. One not proven is named, left as it is, and the restore does not end
  green.

An hour a reprocess replaced while warm held it (offload/reprocessed.py) is left out: cold
holds the new logic's rows and warm the earlier's, and adding what warm "lacks" would add the
changed rows beside warm's own. Such hours are named.

One restore runs at a time on a warm tier (a lock table; restore_lock.sql).

The rows go through staging tables (`_cold_restore_*`, dropped after) and into warm by
`ALTER TABLE ... ATTACH PARTITION ... FROM`: atomic per partition, and no materialized view
runs, so a restored raw row is not parsed into bronze a second time. A restore interrupted
between partitions is finished by running it again: each run adds only what warm still lacks.
A dry run stages and counts, and attaches nothing.

The restored rows keep their ingestion times, which the offload's watermarks have passed: an
append layer's next offload finds nothing new in them (in its overlap it replaces cold's rows
by the same rows), a replace layer's fingerprint is unchanged.
"""

import os
import re
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.binding import format_str
from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog

from cold_assets.hours import HourPolicy
from cold_assets.offload.reprocessed import reprocessed_marks
from cold_assets.parity.audit import AuditReport, run_audit
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.recovery.staging import copy_cold_rows
from cold_assets.tables import GOLD_WINDOWS, TABLES, Layer, MirroredTable, table_by_cold_name
from cold_assets.warm.read import final_key_filter, identifier, render, warm_columns, warm_now

STAGE_PREFIX = "_cold_restore_"
_PARTITION_ID = re.compile(r"^[0-9A-Za-z_-]+$")
SILVER = table_by_cold_name("silver_trades")


class RestoreRefused(ValueError):
    """The restore cannot start (the range outside warm's retention, empty, not whole hours;
    another restore running): nothing was written."""


class RestoreFailed(RuntimeError):
    """The restore failed once started: the partitions attached before it stay (run it again
    to finish: it adds only what warm still lacks)."""


@dataclass(frozen=True)
class PartitionRestore:
    """One warm partition of one table: what warm holds of the range now, what cold holds,
    and the rows the restore adds (would add, in a dry run)."""

    table: str  # cold table name
    partition: str  # the warm partition (its partition expression's value)
    warm_rows: int
    cold_rows: int
    rows_added: int


@dataclass
class RestoreReport:
    start: datetime
    end: datetime
    dry_run: bool
    partitions: list[PartitionRestore] = field(default_factory=list)
    # gold table -> bars restored with their window's bounds as open/close keys (no trade in cold silver)
    bars_keyed_by_window: dict[str, int] = field(default_factory=dict)
    # gold table -> bars whose trades in cold silver do not end in their open and close (keys uncertain)
    bars_keyed_uncertainly: dict[str, int] = field(default_factory=dict)
    # gold table -> windows whose warm bar lost trades, cold's bar merged in
    bars_merged: dict[str, int] = field(default_factory=dict)
    # gold table -> windows whose warm bar lost trades, not proven to merge with cold's: not restored (named)
    partial_windows: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # cold table -> why it was left out
    # cold table -> its hours (offload ranges) a reprocess replaced while warm held them: left out
    reprocessed: dict[str, list[str]] = field(default_factory=dict)
    audit: AuditReport | None = None  # after the rows were attached: the proof

    @property
    def rows_added(self) -> int:
        return sum(p.rows_added for p in self.partitions)

    @property
    def ok(self) -> bool:
        return (self.audit is None or self.audit.ok) and not any(self.partial_windows.values())


def check_range(start: datetime, end: datetime, now: datetime, policy: HourPolicy) -> None:
    """Refuses, before anything is written, a range warm cannot keep: restored rows older than
    the retention would be dropped again by warm's TTL."""
    for name, value in (("--from", start), ("--to", end)):
        if value.minute or value.second or value.microsecond:
            raise RestoreRefused(f"{name} {value.isoformat()} is not on the hour")
    if end <= start:
        raise RestoreRefused(f"the range is empty: from {start.isoformat()} to {end.isoformat()}")
    horizon = policy.warm_horizon(now)
    if start <= horizon:
        raise RestoreRefused(
            f"--from {start.isoformat()} is outside warm's retention ({policy.warm_retention.days} days: warm keeps rows "
            f"after {horizon.isoformat()}); warm's TTL would drop the rows again. Cold is the copy of those hours: read "
            "them through the `_all` views"
        )
    if start > now:
        raise RestoreRefused(f"--from {start.isoformat()} is in the future (warm's clock: {now.isoformat()})")


def restore(
    client: Client,
    catalog: Catalog,
    start: datetime,
    end: datetime,
    tables: Sequence[MirroredTable] | None = None,
    policy: HourPolicy | None = None,
    dry_run: bool = False,
) -> RestoreReport:
    """Restores [start, end) of `tables` (default: all ten) from cold into warm, then audits
    the range (not in a dry run)."""
    policy = policy or HourPolicy()
    tables = list(tables or TABLES)
    now = warm_now(client)
    check_range(start, end, now, policy)
    report = RestoreReport(start, end, dry_run)
    with _lock(client):
        stages = _Stages(client)
        try:
            silver = None
            if any(t.layer is Layer.GOLD for t in tables):
                silver = stages.cold_silver(catalog, *_gold_span(tables, start, end))
            for spec in tables:
                range_start, range_end = _table_range(spec, start, end)
                if spec.gold_window == "1d" and range_start <= policy.warm_horizon(now):
                    range_start += timedelta(days=1)  # that day's bar began before the horizon: the TTL drops it
                    if range_start >= range_end:
                        report.skipped[spec.cold] = "its day began before warm's retention horizon"
                        continue
                report.partitions += _restore_table(
                    client, catalog, stages, spec, range_start, range_end, silver, now - policy.settle_lag - policy.late_grace,
                    report,
                )
        except Exception as error:
            attached = [f"{p.table} {p.partition}" for p in report.partitions if p.rows_added and not dry_run]
            raise RestoreFailed(
                f"{type(error).__name__}: {error}; partitions attached before: {', '.join(attached) or 'none'}"
            ) from error
        finally:
            stages.drop_all()
    if not dry_run:
        report.audit = run_audit(client, catalog, start, end, tables, policy)
    return report


LOCK = identifier(f"{STAGE_PREFIX}lock")


@contextmanager
def _lock(client: Client) -> Iterator[None]:
    """One restore at a time on a warm tier (two would both find the same rows missing, and
    share the staging tables). A lock left by a restore killed on this host is taken over."""
    holder = f"{socket.gethostname()} {os.getpid()} {datetime.now(UTC).isoformat()}"
    sql = render("restore_lock", lock=LOCK, holder=format_str(holder))
    try:
        client.command(sql)
    except Exception:
        found = client.query(
            "SELECT comment FROM system.tables WHERE database = currentDatabase() AND name = {name:String}",
            parameters={"name": LOCK},
        ).result_rows
        held_by = str(found[0][0]) if found else "?"
        host, pid, *_ = (held_by.split(" ") + ["", ""])[:3]
        if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
            client.command(f"DROP TABLE IF EXISTS {LOCK}")  # its holder was killed
            client.command(sql)
        else:
            raise RestoreRefused(
                f"another restore is running on this warm tier ({held_by}); if none is, DROP TABLE {LOCK}"
            ) from None
    try:
        yield
    finally:
        client.command(f"DROP TABLE IF EXISTS {LOCK}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _table_range(spec: MirroredTable, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    return spec.offload_range(start)[0], spec.offload_range(end - timedelta(hours=1))[1]


def _gold_span(tables: Sequence[MirroredTable], start: datetime, end: datetime) -> tuple[datetime, datetime]:
    ranges = [_table_range(t, start, end) for t in tables if t.layer is Layer.GOLD]
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _restore_table(
    client: Client,
    catalog: Catalog,
    stages: "_Stages",
    spec: MirroredTable,
    range_start: datetime,
    range_end: datetime,
    silver: "_ColdSilver | None",
    settled_before: datetime,
    report: RestoreReport,
) -> list[PartitionRestore]:
    """Restores one table's [range_start, range_end); `settled_before`: gold windows ending
    later may still be taking trades, late ones included (their bars are not judged against
    silver)."""
    warm = identifier(spec.warm)
    time_column = identifier(spec.time_column)
    bounds = {"range_start": range_start, "range_end": range_end}
    added = stages.like(spec, "added", engine="")
    columns = [c.name for c in warm_columns(client, spec.warm)]
    spans, report.reprocessed[spec.cold] = _spans_not_reprocessed(catalog, spec, range_start, range_end)
    if spec.layer is Layer.GOLD:
        assert silver is not None and spec.gold_window is not None
        trade_keys = silver.trade_keys
        cold_rows = stages.bars(spec)
        for lo, hi in spans:
            copy_cold_rows(client, catalog, spec, cold_rows, lo, hi, _BAR_COLUMNS)
        interval = GOLD_WINDOWS[spec.gold_window]
        windows = stages.windows(spec)
        key_filter, key_parameters = final_key_filter(client, SILVER, range_start, range_end)
        sql = render(
            "restore_classify_bars", windows=windows, warm=warm, cold_bars=cold_rows, warm_silver=identifier(SILVER.warm),
            trade_keys=trade_keys, interval=interval, key_filter=key_filter,
        )
        judged = {"settled_before": settled_before, "silver_reprocessed": silver.reprocessed_hours}
        client.command(sql, parameters=bounds | key_parameters | judged)
        report.bars_merged[spec.cold] = int(client.query(f"SELECT countIf(mergeable) FROM {windows}").result_rows[0][0])
        sql = render(
            "restore_missing_bars", added=added, cold_bars=cold_rows, trade_keys=trade_keys, warm=warm, interval=interval,
            windows=windows,
        )
        client.command(sql, parameters=bounds)
        without = render("restore_bars_without_trades", cold_bars=cold_rows, trade_keys=trade_keys, interval=interval)
        unkeyed, uncertain = client.query(without).result_rows[0]
        report.bars_keyed_by_window[spec.cold], report.bars_keyed_uncertainly[spec.cold] = int(unkeyed), int(uncertain)
        partial = client.query(render("restore_partial_bars", windows=windows)).result_rows
        report.partial_windows[spec.cold] = [
            f"{e} {s} {w} (trades: warm's bar {n}, cold's {m}, the two silvers' {t})" for e, s, w, n, m, t in partial
        ]
    else:
        cold_rows = stages.like(spec, "cold", engine="ENGINE = MergeTree ORDER BY tuple()")
        present = {f.name for f in catalog.load_table(spec.cold_identifier).schema().fields}
        for lo, hi in spans:
            copy_cold_rows(client, catalog, spec, cold_rows, lo, hi, columns)
        listed = ", ".join(identifier(c) for c in columns if c in present)
        if spec.final_key is not None:
            key = ", ".join(identifier(c) for c in (*spec.final_key.groups, spec.final_key.id))
            sql = render(
                "restore_missing_keys", added=added, cold_rows=cold_rows, warm=warm, columns=listed, key=key, time_column=time_column
            )
        else:
            sql = render("restore_missing_rows", added=added, cold_rows=cold_rows, warm=warm, columns=listed, time_column=time_column)
        client.command(sql, parameters=bounds)
    partition_key = client.query(render("restore_partition_key"), parameters={"table": spec.warm}).result_rows[0][0]
    by_partition: dict[str, dict[str, int]] = {}
    for source, column in ((warm, time_column), (cold_rows, time_column), (added, time_column)):
        sql = render("restore_rows_by_partition", partition_key=partition_key, table=source, time_column=column)
        by_partition[source] = {str(name): int(rows) for name, rows in client.query(sql, parameters=bounds).result_rows}
    if not report.dry_run:
        for partition_id in _staged_partitions(client, added):
            client.command(render("restore_attach", warm=warm, partition_id=format_str(partition_id), added=added))
    names = sorted(set(by_partition[warm]) | set(by_partition[cold_rows]) | set(by_partition[added]))
    return [
        PartitionRestore(
            spec.cold, name, by_partition[warm].get(name, 0), by_partition[cold_rows].get(name, 0), by_partition[added].get(name, 0)
        )
        for name in names
    ]


def _spans_not_reprocessed(
    catalog: Catalog, spec: MirroredTable, start: datetime, end: datetime
) -> tuple[list[tuple[datetime, datetime]], list[str]]:
    """[start, end) without the offload ranges marked reprocessed, as spans, and those ranges' keys."""
    marks = reprocessed_marks(catalog.load_table(spec.cold_identifier))
    spans: list[tuple[datetime, datetime]] = []
    left: list[str] = []
    lo = at = start
    while at < end:
        range_start, range_end = spec.offload_range(at)
        if partition_key_of(range_start) in marks:
            if lo < range_start:
                spans.append((lo, range_start))
            left.append(partition_key_of(range_start))
            lo = range_end
        at = range_end
    if lo < end:
        spans.append((lo, end))
    return spans, left


_BAR_COLUMNS = ["exchange", "symbol", "window_start", "open", "high", "low", "close", "volume", "quote_volume", "trade_count"]


def _staged_partitions(client: Client, added: str) -> list[str]:
    ids = [row[0] for row in client.query(render("restore_added_partitions"), parameters={"table": added}).result_rows]
    for partition_id in ids:
        if not _PARTITION_ID.match(partition_id):
            raise ValueError(f"unexpected partition id {partition_id!r} in {added}")
    return ids


@dataclass(frozen=True)
class _ColdSilver:
    """Cold silver's trades of the gold span, staged for the bars' keys and proofs, and the
    hours of it a reprocess replaced (left out of the stage; gold windows over them are not
    judged against silver)."""

    trade_keys: str  # the staging table
    reprocessed_hours: list[datetime]


class _Stages:
    """The restore's staging tables: made fresh (one left by an interrupted restore is dropped
    first), dropped at the end whatever happened."""

    def __init__(self, client: Client):
        self.client = client
        self.made: list[str] = []

    def _fresh(self, name: str) -> str:
        stage = identifier(f"{STAGE_PREFIX}{name}")
        self.client.command(f"DROP TABLE IF EXISTS {stage}")
        self.made.append(stage)
        return stage

    def like(self, spec: MirroredTable, role: str, engine: str) -> str:
        stage = self._fresh(f"{spec.warm}_{role}")
        self.client.command(render("restore_stage_like", stage=stage, warm=identifier(spec.warm), engine=engine))
        return stage

    def bars(self, spec: MirroredTable) -> str:
        stage = self._fresh(f"{spec.warm}_cold")
        self.client.command(render("restore_stage_bars", stage=stage))
        return stage

    def windows(self, spec: MirroredTable) -> str:
        stage = self._fresh(f"{spec.warm}_windows")
        self.client.command(render("restore_stage_windows", stage=stage))
        return stage

    def cold_silver(self, catalog: Catalog, start: datetime, end: datetime) -> "_ColdSilver":
        stage = self._fresh("silver_trade_keys")
        self.client.command(render("restore_stage_trade_keys", stage=stage))
        columns = ["exchange", "symbol", "exchange_symbol", "exchange_ts", "trade_id", "price", "quantity", "quote_quantity"]
        # Not silver's reprocessed hours: their trades follow another logic than warm's.
        spans, reprocessed = _spans_not_reprocessed(catalog, SILVER, start, end)
        for lo, hi in spans:
            copy_cold_rows(self.client, catalog, SILVER, stage, lo, hi, columns)
        return _ColdSilver(stage, [hour_of(key) for key in reprocessed])

    def drop_all(self) -> None:
        for stage in self.made:
            self.client.command(f"DROP TABLE IF EXISTS {stage}")


def format_restore(report: RestoreReport) -> str:
    what = "would add" if report.dry_run else "added"
    lines = [f"restore {report.start.isoformat()} .. {report.end.isoformat()}{' (dry run: nothing written)' if report.dry_run else ''}", ""]
    lines.append(f"  {'table':<16} {'partition':<10} {'warm rows':>10} {'cold rows':>10} {what:>10}")
    for p in report.partitions:
        lines.append(f"  {p.table:<16} {p.partition:<10} {p.warm_rows:>10} {p.cold_rows:>10} {p.rows_added:>10}")
    for table, bars in report.bars_keyed_by_window.items():
        if bars:
            lines.append(f"  {table}: {bars} bars have no trade in cold silver; their open/close are keyed by the window's bounds")
    for table, bars in report.bars_keyed_uncertainly.items():
        if bars:
            lines.append(f"  {table}: {bars} bars' trades in cold silver do not end in their open/close; keyed by them anyway")
    for table, bars in report.bars_merged.items():
        if bars:
            verb = "would get" if report.dry_run else "got"
            lines.append(f"  {table}: {bars} windows whose warm bar lost trades {verb} cold's bar merged in")
    for table, windows in report.partial_windows.items():
        if windows:
            lines.append(
                f"  {table}: {len(windows)} windows whose warm bar disagrees with cold's or the two tiers' silver NOT restored "
                f"(cold's bar could not be proven to merge): {'; '.join(windows[:5])}"
            )
    for table, why in report.skipped.items():
        lines.append(f"  {table}: left out: {why}")
    for table, hours in report.reprocessed.items():
        if hours:
            lines.append(
                f"  {table}: {len(hours)} reprocessed hours left out (cold holds the new logic's rows, warm the earlier's): "
                + ", ".join(hours[:5]) + (" ..." if len(hours) > 5 else "")
            )
    lines.append("")
    lines.append(f"{report.rows_added} rows {what}")
    if report.audit is not None:
        verdict = "green" if report.audit.ok else f"NOT green: {len(report.audit.mismatches)} hours differ"
        lines.append(f"audit of the range after the restore: {verdict}")
    return "\n".join(lines)
