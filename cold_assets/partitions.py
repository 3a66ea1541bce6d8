"""Hourly partitions (UTC) shared by the ten cold assets."""

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from dagster import DailyPartitionsDefinition, HourlyPartitionsDefinition

from cold_assets.settings import Settings

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"


def configured_start(value: str) -> str:
    """COLD_PARTITIONS_START as a partition key: ISO 8601 as the command line takes it
    (2026-01-01T00:00, UTC without an offset) or a partition key (2026-01-01-00:00), on the hour."""
    try:
        at = datetime.strptime(value, PARTITION_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"environment variable COLD_PARTITIONS_START={value!r} is not an hour "
                "(ISO 8601 such as 2026-01-01T00:00, UTC without an offset, or a partition key such as 2026-01-01-00:00)"
            ) from None
        at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    if at != at.replace(minute=0, second=0, microsecond=0):
        raise ValueError(f"environment variable COLD_PARTITIONS_START={value!r} is not on the hour")
    return partition_key_of(at)


def first_partition(settings: Settings) -> str:
    """COLD_PARTITIONS_START, or, unset, a start chosen once and kept in COLD_HOME: the warm
    retention back from the first time the code location loaded, the oldest hour warm can
    still offload. A fresh demo then shows weeks of partitions, not every hour since a fixed
    date; and the start never moves, so no partition ever drops out of the definition."""
    if settings.partitions_start:
        return configured_start(settings.partitions_start)
    kept = settings.home / "partitions_start"
    if kept.exists():
        return kept.read_text().strip()
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    chosen = (start - timedelta(days=settings.warm_retention_days)).strftime(PARTITION_FORMAT)
    settings.home.mkdir(parents=True, exist_ok=True)
    kept.write_text(chosen + "\n")
    return chosen


def hourly_partitions(settings: Settings) -> HourlyPartitionsDefinition:
    # end_offset=1: the current, still open hour is a partition too, so the schedule can keep
    # the cold tier within about an hour of the warm one.
    return HourlyPartitionsDefinition(
        start_date=first_partition(settings), timezone="UTC", fmt=PARTITION_FORMAT, end_offset=1
    )


def daily_partitions(settings: Settings) -> DailyPartitionsDefinition:
    """Days (UTC) from the day of the first hourly partition, up to yesterday: the reprocess
    job's, backfilled by day."""
    first = hour_of(first_partition(settings))
    return DailyPartitionsDefinition(start_date=first.replace(hour=0).strftime("%Y-%m-%d"), timezone="UTC")


@lru_cache(maxsize=1 << 16)  # parsing is most of a sensor's Python time: a month of keys, every table, every tick
def hour_of(partition_key: str) -> datetime:
    return datetime.strptime(partition_key, PARTITION_FORMAT).replace(tzinfo=UTC)


def partition_key_of(hour: datetime) -> str:
    return hour.astimezone(UTC).strftime(PARTITION_FORMAT)
