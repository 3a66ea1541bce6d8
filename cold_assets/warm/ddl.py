"""Applies ddl/clickhouse to the warm tier: every file in name order, every statement idempotent.

The warm retention is said once, by COLD_WARM_RETENTION_DAYS: the DDL's TTLs are written as
`INTERVAL {{retention_days}} DAY` and filled in from it. A medallion table that already exists
with another TTL is refused before anything runs, with the statements that would align it:
the offload decides which hours are cold-only by the setting, so the two must agree.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from cold_assets.settings import Settings, ddl_dir
from cold_assets.tables import GOLD_WINDOWS
from cold_assets.warm.capabilities import capabilities_of
from cold_assets.warm.read import identifier

_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")
_TEMPLATE_MARK = "{{window}}"
_RETENTION_MARK = "{{retention_days}}"
_MAX_LATENESS_MARK = "{{max_lateness_seconds}}"
# A TTL as ClickHouse shows it in system.tables.engine_full.
_SHOWN_TTL = re.compile(r"\bTTL\s+toDateTime\((\w+)\)\s*\+\s*toIntervalDay\((\d+)\)")
_CREATED_TTL = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)\b.*?\bTTL toDateTime\((\w+)\) \+ INTERVAL", re.S)
# The embedded tier's processes (runs, the CLI, the sensors' children) live seconds, and
# ClickHouse removes a merge's source parts from a thread that runs every
# `cleanup_delay_period` (30 s by default): it never ran, the parts stayed on disk, and every
# process loaded them all again when it opened the tier. With it at 1 s, a process that lives
# a second removes the parts older than `old_parts_lifetime`: those of the processes before
# it, a tick (15 minutes) apart. The lifetime keeps a merge's sources for a minute (480 s by
# default): long enough for the kernel to write the merged part out (30 s), so a power loss
# finds either the merged part or its sources.
# Merges are capped at 64 MiB of source parts (150 GiB by default): silver and gold are
# partitioned by month, and once the month held a few weeks every process opening the tier
# started merging most of it, a merge no process of seconds lives to finish, cancelled when it
# closed and started again by the next: CPU spent for nothing beside every tick (figures in
# the CHANGELOG). The month then stays in parts of up to 64 MiB.
# A server is left as it is.
EMBEDDED_MERGE_TREE = {
    "old_parts_lifetime": 60,
    "cleanup_delay_period": 1,
    "cleanup_delay_period_random_add": 0,
    "max_bytes_to_merge_at_max_space_in_pool": 64 * 2**20,
}


class WarmRetentionMismatch(ValueError):
    """Warm tables whose TTL is not COLD_WARM_RETENTION_DAYS, or a feed that accepts trades
    later than the TTL guard can repair; nothing was changed."""


@dataclass(frozen=True)
class WarmLimits:
    """What the warm DDL takes from the settings: the TTL, and the latest a trade may arrive.
    That is a day inside the TTL guard's margin: a later trade could not be repaired before its
    range is cold-only, and the daily bars' range is a whole day."""

    retention_days: int
    max_lateness_days: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "WarmLimits":
        if settings.ttl_margin_days < 2:
            raise ValueError(
                f"COLD_TTL_MARGIN_DAYS={settings.ttl_margin_days} leaves a trade no room to be late: the feed accepts trades "
                "up to a day inside the margin (the daily bars' range), so it must be at least 2"
            )
        return cls(settings.warm_retention_days, settings.ttl_margin_days - 1)


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in _STATEMENT_END.split(body) if s.strip()]


def warm_statements(limits: WarmLimits, directory: Path | None = None) -> list[str]:
    """The ordered statements of ddl/clickhouse, with the gold template expanded per window
    and the TTLs and the feed's default max_lateness set from `limits`."""
    if limits.retention_days < 1 or not 0 < limits.max_lateness_days < limits.retention_days:
        raise ValueError(f"the warm retention must be at least 1 day and the max lateness shorter, got {limits}")
    directory = directory or ddl_dir() / "clickhouse"
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no ClickHouse DDL found in {directory}")
    statements: list[str] = []
    for path in files:
        sql = path.read_text().replace(_RETENTION_MARK, str(limits.retention_days))
        sql = sql.replace(_MAX_LATENESS_MARK, str(limits.max_lateness_days * 86_400))
        if _TEMPLATE_MARK in sql:
            for window, interval in GOLD_WINDOWS.items():
                statements += _statements(sql.replace("{{window}}", window).replace("{{interval}}", interval))
        else:
            statements += _statements(sql)
    return statements


def ttl_tables(statements: list[str]) -> dict[str, str]:
    """The tables the DDL creates with a TTL: table -> the column the TTL is keyed on."""
    return {m.group(1): m.group(2) for s in statements if (m := _CREATED_TTL.search(s))}


def retention_mismatches(client: Client, retention_days: int, statements: list[str]) -> list[str]:
    """For each existing table whose TTL is not `retention_days`: the statement aligning it."""
    expected = ttl_tables(statements)
    rows = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() AND name IN {names:Array(String)}",
        parameters={"names": sorted(expected)},
    ).result_rows
    fixes = []
    for name, engine in sorted((str(n), str(e)) for n, e in rows):
        shown = _SHOWN_TTL.search(engine)
        if shown is None or shown.group(1) != expected[name] or int(shown.group(2)) != retention_days:
            fixes.append(f"ALTER TABLE {name} MODIFY TTL toDateTime({expected[name]}) + INTERVAL {retention_days} DAY")
    return fixes


def max_lateness_fix(client: Client, limits: WarmLimits) -> str | None:
    """The INSERT that brings an existing feed_limits.max_lateness within `limits`, if needed."""
    exists = client.query(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'feed_limits'"
    ).result_rows[0][0]
    if not exists:
        return None
    rows = client.query("SELECT argMax(seconds, updated_at) FROM feed_limits WHERE name = 'max_lateness' HAVING count() > 0").result_rows
    allowed = limits.max_lateness_days * 86_400
    if not rows or int(rows[0][0]) <= allowed:
        return None
    return (
        f"feed_limits.max_lateness is {int(rows[0][0])} s, later than a day inside COLD_TTL_MARGIN_DAYS "
        f"({limits.max_lateness_days} days, {allowed} s), so a trade that late would land in a range the TTL guard cannot "
        "repair before it is cold-only: "
        f"INSERT INTO feed_limits (name, seconds) VALUES ('max_lateness', {allowed})"
    )


def apply_warm_ddl(client: Client, limits: WarmLimits) -> int:
    """Creates what is missing in the warm medallion; returns the number of statements run.
    Refuses, before running any, while an existing table's TTL disagrees with the retention or
    the feed accepts trades later than the TTL guard can repair."""
    retention_days = limits.retention_days
    statements = warm_statements(limits)
    fixes = retention_mismatches(client, retention_days, statements)
    problems = []
    if fixes:
        problems.append(
            f"COLD_WARM_RETENTION_DAYS={retention_days} disagrees with the TTL of {len(fixes)} warm tables, and the "
            "offload decides which hours are cold-only by it. Set COLD_WARM_RETENTION_DAYS to the tables' TTL, or "
            "align the tables (ClickHouse rewrites their parts): " + "; ".join(fixes)
        )
    lateness = max_lateness_fix(client, limits)
    if lateness:
        problems.append(lateness)
    if problems:
        raise WarmRetentionMismatch(" | ".join(problems) + "; nothing was changed")
    for statement in statements:
        client.command(statement)
    embedded = embedded_settings_statements(client) if capabilities_of(client).embedded else []
    for statement in embedded:
        client.command(statement)
    return len(statements) + len(embedded)


def embedded_settings_statements(client: Client) -> list[str]:
    """For the embedded tier: the settings of each MergeTree table of its database for
    processes that live seconds (EMBEDDED_MERGE_TREE): outdated parts removed once a minute
    old, no merge bigger than such a process can finish."""
    rows = client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'"
    ).result_rows
    settings = ", ".join(f"{k} = {v}" for k, v in EMBEDDED_MERGE_TREE.items())
    return [f"ALTER TABLE {identifier(name)} MODIFY SETTING {settings}" for name in sorted(str(n) for (n,) in rows)]
