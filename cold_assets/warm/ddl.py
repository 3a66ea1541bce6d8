"""Applies ddl/clickhouse to the warm tier: every file in name order, every statement idempotent."""

import re
from pathlib import Path

from clickhouse_connect.driver.client import Client

from cold_assets.settings import ddl_dir
from cold_assets.tables import GOLD_WINDOWS

_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")
_TEMPLATE_MARK = "{{window}}"


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in _STATEMENT_END.split(body) if s.strip()]


def warm_statements(directory: Path | None = None) -> list[str]:
    """The ordered statements of ddl/clickhouse, with the gold template expanded per window."""
    directory = directory or ddl_dir() / "clickhouse"
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no ClickHouse DDL found in {directory}")
    statements: list[str] = []
    for path in files:
        sql = path.read_text()
        if _TEMPLATE_MARK in sql:
            for window, interval in GOLD_WINDOWS.items():
                statements += _statements(sql.replace("{{window}}", window).replace("{{interval}}", interval))
        else:
            statements += _statements(sql)
    return statements


def apply_warm_ddl(client: Client) -> int:
    """Creates what is missing in the warm medallion; returns the number of statements run."""
    statements = warm_statements()
    for statement in statements:
        client.command(statement)
    return len(statements)
