"""Iceberg row filters for the event-time ranges the offload and the checks work on."""

from datetime import datetime

from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, LessThan


def range_filter(column: str, start: datetime, end: datetime) -> BooleanExpression:
    """Rows whose `column` is in [start, end)."""
    return And(GreaterThanOrEqual(column, start.isoformat()), LessThan(column, end.isoformat()))
