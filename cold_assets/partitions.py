"""Hourly partitions (UTC) shared by the nine cold assets."""

from datetime import datetime, timezone

from dagster import HourlyPartitionsDefinition

from cold_assets.settings import Settings

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"


def hourly_partitions(settings: Settings) -> HourlyPartitionsDefinition:
    # end_offset=1: the current, still open hour is a partition too, so the schedule can keep
    # the cold tier within about an hour of the warm one.
    return HourlyPartitionsDefinition(
        start_date=settings.partitions_start, timezone="UTC", fmt=PARTITION_FORMAT, end_offset=1
    )


def hour_of(partition_key: str) -> datetime:
    return datetime.strptime(partition_key, PARTITION_FORMAT).replace(tzinfo=timezone.utc)


def partition_key_of(hour: datetime) -> str:
    return hour.astimezone(timezone.utc).strftime(PARTITION_FORMAT)
