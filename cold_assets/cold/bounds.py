"""A data file's bounds on a timestamp column, from the statistics its manifest keeps:
Iceberg stores a timestamptz as microseconds since the epoch."""

from datetime import datetime, timedelta
from typing import cast

from pyiceberg.conversions import from_bytes
from pyiceberg.types import NestedField, PrimitiveType

from cold_assets.warm.read import EPOCH


def micros(at: datetime) -> int:
    """An instant as Iceberg's timestamptz: microseconds since the epoch."""
    return (at - EPOCH) // timedelta(microseconds=1)


def instant(microseconds: int) -> datetime:
    return EPOCH + timedelta(microseconds=microseconds)


def bound_micros(bounds: dict[int, bytes] | None, field: NestedField) -> int | None:
    """`field`'s bound among a data file's lower or upper `bounds` (None: not kept)."""
    raw = (bounds or {}).get(field.field_id)
    return cast(int, from_bytes(cast(PrimitiveType, field.field_type), raw)) if raw is not None else None
