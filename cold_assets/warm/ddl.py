"""Applies ddl/clickhouse to the warm tier: every file in name order, every statement idempotent.

The warm retention is said once, by COLD_WARM_RETENTION_DAYS: the DDL's TTLs are written as
`INTERVAL {{retention_days}} DAY` and filled in from it. A medallion table that already exists
with another TTL is refused before anything runs, with the statements that would align it:
the offload decides which hours are cold-only by the setting, so the two must agree.
"""

import re
from pathlib import Path

from clickhouse_connect.driver.client import Client

from cold_assets.settings import ddl_dir
from cold_assets.tables import GOLD_WINDOWS

_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")
_TEMPLATE_MARK = "{{window}}"
_RETENTION_MARK = "{{retention_days}}"
# A TTL as ClickHouse shows it in system.tables.engine_full.
_SHOWN_TTL = re.compile(r"\bTTL\s+toDateTime\((\w+)\)\s*\+\s*toIntervalDay\((\d+)\)")
_CREATED_TTL = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)\b.*?\bTTL toDateTime\((\w+)\) \+ INTERVAL", re.S)


class WarmRetentionMismatch(ValueError):
    """Warm tables whose TTL is not COLD_WARM_RETENTION_DAYS; nothing was changed."""


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in _STATEMENT_END.split(body) if s.strip()]


def warm_statements(retention_days: int, directory: Path | None = None) -> list[str]:
    """The ordered statements of ddl/clickhouse, with the gold template expanded per window
    and the TTLs set to `retention_days`."""
    if retention_days < 1:
        raise ValueError(f"the warm retention must be at least 1 day, got {retention_days}")
    directory = directory or ddl_dir() / "clickhouse"
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no ClickHouse DDL found in {directory}")
    statements: list[str] = []
    for path in files:
        sql = path.read_text().replace(_RETENTION_MARK, str(retention_days))
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


def apply_warm_ddl(client: Client, retention_days: int) -> int:
    """Creates what is missing in the warm medallion; returns the number of statements run.
    Refuses, before running any, while an existing table's TTL disagrees with `retention_days`."""
    statements = warm_statements(retention_days)
    fixes = retention_mismatches(client, retention_days, statements)
    if fixes:
        raise WarmRetentionMismatch(
            f"COLD_WARM_RETENTION_DAYS={retention_days} disagrees with the TTL of {len(fixes)} warm tables, and the "
            "offload decides which hours are cold-only by it; nothing was changed. Set COLD_WARM_RETENTION_DAYS to the "
            "tables' TTL, or align the tables (ClickHouse rewrites their parts): " + "; ".join(fixes)
        )
    for statement in statements:
        client.command(statement)
    return len(statements)
