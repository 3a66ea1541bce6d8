"""Where an hour stands in time: still open, closed, or older than the warm tier remembers.

Every part that meets time (the offload, its checks, the audit, the sensors, the federated
views) asks the same question through `HourPolicy.status`, with the same clock reading:

- OPEN: rows may still arrive. The range ended less than the settle lag plus the late-data
  grace ago (or has not ended). Its checks compare what the offload read, not the warm hour
  as it is now.
- CLOSED: settled. Warm and cold must be equal, whole hour against whole hour.
- COLD_ONLY: the range started longer ago than the warm retention, so ClickHouse's TTL may
  have dropped some of its rows: the cold copy is the copy of record. It is never read from
  warm again and never compared with what warm still has.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from cold_assets.settings import Settings
from cold_assets.tables import MirroredTable


class HourStatus(str, Enum):
    OPEN = "open"
    CLOSED = "closed"
    COLD_ONLY = "cold_only"


@dataclass(frozen=True)
class HourPolicy:
    settle_lag: timedelta = timedelta(seconds=30)
    late_grace: timedelta = timedelta(minutes=10)
    warm_retention: timedelta = timedelta(days=30)

    def __post_init__(self) -> None:
        for name in ("settle_lag", "late_grace"):
            if getattr(self, name) < timedelta(0):
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.warm_retention <= timedelta(0):
            raise ValueError(f"warm_retention must be positive, got {self.warm_retention}")

    @classmethod
    def from_settings(cls, settings: Settings) -> "HourPolicy":
        return cls(
            settle_lag=timedelta(seconds=settings.settle_lag_seconds),
            late_grace=timedelta(seconds=settings.late_grace_seconds),
            warm_retention=timedelta(days=settings.warm_retention_days),
        )

    def status(self, spec: MirroredTable, hour: datetime, now: datetime) -> HourStatus:
        """The status of hourly partition `hour` of `spec` (its offload range: the day for the
        daily bars) at warm-clock time `now`."""
        start, end = spec.offload_range(hour)
        if start <= now - self.warm_retention:
            return HourStatus.COLD_ONLY
        if end + self.settle_lag + self.late_grace > now:
            return HourStatus.OPEN
        return HourStatus.CLOSED

    def warm_horizon(self, now: datetime) -> datetime:
        """Ranges starting after this instant are still whole in warm."""
        return now - self.warm_retention
