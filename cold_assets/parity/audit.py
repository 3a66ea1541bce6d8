"""The audit: every cold table against its warm table, hour by hour, and the warm
medallion's own consistency beside it. Used by the daily audit job and `cold-assets audit`."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from cold_assets.hours import HourPolicy
from cold_assets.parity.checksums import (
    ColdTierUnreadable,
    HourParity,
    ParityBasis,
    cold_read,
    partitions_parity,
)
from cold_assets.partitions import partition_key_of
from cold_assets.tables import GOLD_WINDOWS, TABLES, MirroredTable, OffloadMode, table_by_cold_name
from cold_assets.warm.read import final_key_filter, identifier, render, warm_now

SILVER = table_by_cold_name("silver_trades")  # the warm table the medallion queries read FINAL


@dataclass(frozen=True)
class MedallionCheck:
    check: str  # what is compared, e.g. "raw = bronze + rejects"
    hour: str
    left: int
    right: int
    at_most: bool = False  # left <= right passes (silver <= bronze); otherwise left == right

    @property
    def ok(self) -> bool:
        return self.left <= self.right if self.at_most else self.left == self.right


@dataclass
class AuditReport:
    start: datetime
    end: datetime
    parity: list[HourParity] = field(default_factory=list)
    medallion: list[MedallionCheck] = field(default_factory=list)
    # (cold table, partition key) -> cold rows ingested within the settle lag: in flight, not
    # yet judged (an append layer's closed hour is compared on its settled rows).
    in_flight: dict[tuple[str, str], int] = field(default_factory=dict)
    compared_at: dict[str, datetime] = field(default_factory=dict)  # cold table -> when its hours were read

    @property
    def mismatches(self) -> list[HourParity]:
        return [p for p in self.parity if not p.content_matches]

    @property
    def medallion_failures(self) -> list[MedallionCheck]:
        return [m for m in self.medallion if not m.ok]

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.medallion_failures


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    hours, hour = [], start
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


def floor_hour(value: datetime) -> datetime:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _medallion(client: Client, start: datetime, end: datetime) -> list[MedallionCheck]:
    # Both queries read silver FINAL: pruned to the range's key ranges, as the offload's reads.
    key_filter, key_parameters = final_key_filter(client, SILVER, start, end)
    bounds = {"range_start": start, "range_end": end} | key_parameters
    checks = []
    layers = render("medallion_layers", key_filter=key_filter)
    for bucket, raw, bronze, rejects, silver in client.query(layers, parameters=bounds).result_rows:
        hour = partition_key_of(datetime.fromtimestamp(bucket, UTC))
        checks.append(MedallionCheck("raw = bronze + rejects", hour, raw, bronze + rejects))
        checks.append(MedallionCheck("silver <= bronze", hour, silver, bronze, at_most=True))
    for window, interval in GOLD_WINDOWS.items():
        sql = render("gold_vs_silver", table=identifier(f"gold_ohlcv_{window}"), interval=interval, key_filter=key_filter)
        for bucket, differing in client.query(sql, parameters=bounds).result_rows:
            hour = partition_key_of(datetime.fromtimestamp(bucket, UTC))
            checks.append(MedallionCheck(f"gold_ohlcv_{window} windows = silver trades", hour, int(differing), 0))
    return sorted(checks, key=lambda c: (c.hour, c.check))


def _cold_rows_in_flight(
    client: Client, cold_table: Table, spec: MirroredTable, start: datetime, end: datetime, settled: datetime
) -> dict[tuple[str, str], int]:
    try:
        with cold_read(cold_table, client) as (source, parameters):
            sql = render("rows_in_flight", source=source, time_column=identifier(spec.time_column), bucket_function=spec.range_function)
            rows = client.query(sql, parameters={"range_start": start, "range_end": end, "settled": settled, **parameters}).result_rows
    except ColdTierUnreadable:
        return {}
    return {(spec.cold, partition_key_of(datetime.fromtimestamp(int(b), UTC))): int(n) for b, n in rows}


def run_audit(
    client: Client,
    catalog: Catalog,
    start: datetime,
    end: datetime,
    tables: list[MirroredTable] | None = None,
    policy: HourPolicy | None = None,
) -> AuditReport:
    """Audits the hours in [start, end): content parity of each table, medallion consistency.

    Each hour is compared as its status says (hours.py): hours older than the warm retention
    are cold-only (reported, not compared: warm has forgotten them, cold is the copy of
    record), and the medallion's own consistency is checked only where warm is still whole."""
    start, end = floor_hour(start), floor_hour(end)
    if end <= start:
        raise ValueError(f"audit range is empty: from {start.isoformat()} to {end.isoformat()}")
    policy = policy or HourPolicy()
    now = warm_now(client)
    keys = [partition_key_of(h) for h in hours_between(start, end)]
    report = AuditReport(start, end)
    for table in tables or TABLES:
        report.compared_at[table.cold] = datetime.now(UTC)
        cold_table = catalog.load_table(table.cold_identifier)
        report.parity += partitions_parity(client, cold_table, table, keys, content=True, now=now, policy=policy)
        if table.mode is OffloadMode.APPEND and cold_table.current_snapshot() is not None:
            report.in_flight |= _cold_rows_in_flight(client, cold_table, table, start, end, now - policy.settle_lag)
    whole_from = max(start, floor_hour(policy.warm_horizon(now)) + timedelta(hours=1))
    report.medallion = _medallion(client, whole_from, end) if whole_from < end else []
    return report


def format_report(report: AuditReport) -> str:
    lines = [f"audit {report.start.isoformat()} .. {report.end.isoformat()}", ""]
    lines.append(f"{'table':<16} {'hour':<17} {'warm':>10} {'cold':>10}  status")
    for p in report.parity:
        if p.cold_only:
            status = "cold-only (older than the warm retention)"
        elif not p.content_matches:
            status = "COUNT MISMATCH" if not p.counts_match else "CONTENT MISMATCH"
        else:
            status = "ok" if p.basis is ParityBasis.WARM_HOUR else f"ok (open hour: {p.basis.value})"
            if p.basis is ParityBasis.REPROCESSED:
                status = "ok (reprocessed: cold holds what the reprocess wrote; warm keeps the earlier logic)"
        in_flight = report.in_flight.get((p.table, p.partition_key))
        if in_flight and not p.cold_only:
            status += f"; {in_flight} more cold rows in flight (ingested within the settle lag), judged once settled"
        lines.append(f"{p.table:<16} {p.partition_key:<17} {p.warm_rows:>10} {p.cold_rows:>10}  {status}")
    lines += ["", f"{'warm medallion':<44} {'hour':<17} {'left':>10} {'right':>10}  status"]
    for m in report.medallion:
        lines.append(f"{m.check:<44} {m.hour:<17} {m.left:>10} {m.right:>10}  {'ok' if m.ok else 'FAILED'}")
    lines += [
        "",
        f"{len(report.parity)} table-hours checked, {len(report.mismatches)} mismatched, "
        f"{sum(p.cold_only for p in report.parity)} cold-only; "
        f"{len(report.medallion)} medallion checks, {len(report.medallion_failures)} failed",
    ]
    return "\n".join(lines)
