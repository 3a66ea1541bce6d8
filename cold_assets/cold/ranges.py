"""Iceberg row filters for the event-time ranges the offload and the checks work on."""

from datetime import datetime

from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, LessThan


def range_filter(column: str, start: datetime, end: datetime) -> BooleanExpression:
    """Rows whose `column` is in [start, end)."""
    # pyiceberg's predicates take (term, literal); their pydantic-generated signature says otherwise.
    lower = GreaterThanOrEqual(column, start.isoformat())  # type: ignore[call-arg, arg-type]
    upper = LessThan(column, end.isoformat())  # type: ignore[call-arg, arg-type]
    return And(lower, upper)
