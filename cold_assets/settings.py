"""Configuration from the environment, with safe defaults for the embedded setup.

Nothing here is a secret: passwords and keys are read from the environment at the moment a
connection is made (see defs/resources.py) and never stored in Dagster config or logs.
"""

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import overload
from urllib.parse import urlparse

# The append overlap's floor: covers the default settle lag many times over, and a long insert
# through the materialized-view chain.
DEFAULT_OVERLAP_SECONDS = 300

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@overload
def env_str(name: str) -> str | None: ...
@overload
def env_str(name: str, default: str) -> str: ...
def env_str(name: str, default: str | None = None) -> str | None:
    """The variable's value; unset, empty or blank counts as unset (`NAME=` in an env file
    or a compose file is how people leave a setting at its default)."""
    raw = os.environ.get(name)
    return raw.strip() if raw is not None and raw.strip() else default


def env_bool(name: str, default: bool = False) -> bool:
    raw = env_str(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"environment variable {name}={raw!r} is not a boolean (use true/false)")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"environment variable {name}={raw!r} must be at least {minimum}")
    return value


def env_pairs(name: str) -> dict[str, str]:
    """key=value pairs, comma separated (a value may not contain a comma)."""
    pairs = {}
    for item in filter(None, (part.strip() for part in (os.environ.get(name) or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"environment variable {name}: {item!r} is not key=value")
        pairs[key.strip()] = value.strip()
    return pairs


WARM_CHOICES = ("embedded", "server")


def configured_catalog(catalog_name: str) -> dict:
    """pyiceberg's configuration of the catalog (PYICEBERG_CATALOG__* and .pyiceberg.yaml);
    empty when none is configured: the embedded default."""
    from pyiceberg.utils.config import Config

    return dict(Config().get_catalog_config(catalog_name) or {})


def check_tier_choice(catalog_name: str, catalog: dict) -> None:
    """Refuses every environment where the tiers would quietly not be the ones meant: the
    embedded default holds only when nothing of a deployment is configured. An offload from
    an empty embedded warm tier, or into a SQLite catalog on the code location's disk, is green
    everywhere while warm's TTL deletes the only copy of its hours.

    COLD_WARM=server needs CLICKHOUSE_HOST; COLD_WARM=embedded refuses it. Unset, a missing
    CLICKHOUSE_HOST means embedded only where no other CLICKHOUSE_* variable is set
    (CLICKHOUSE_HOSTNAME is a typo, not a choice) and no catalog is configured for
    COLD_CATALOG. A ClickHouse server needs a configured catalog whose warehouse it can read:
    not one on the code location's local disk."""
    host = env_str("CLICKHOUSE_HOST")
    choice = env_str("COLD_WARM")
    if choice is not None and choice not in WARM_CHOICES:
        raise ValueError(f"environment variable COLD_WARM={choice!r} must be one of {', '.join(WARM_CHOICES)}")
    if choice == "server" and host is None:
        raise ValueError("COLD_WARM=server but CLICKHOUSE_HOST is unset: set it to the ClickHouse server")
    if choice == "embedded" and host is not None:
        raise ValueError(f"COLD_WARM=embedded but CLICKHOUSE_HOST={host!r} is set: unset one of them")
    if host is not None:
        if not catalog:
            raise ValueError(
                f"CLICKHOUSE_HOST={host!r} is set, but no catalog is configured for COLD_CATALOG={catalog_name!r}: the cold "
                f"tier would be the SQLite catalog under COLD_HOME. Configure it (PYICEBERG_CATALOG__{catalog_name.upper()}__URI, "
                "__WAREHOUSE, ...), or unset CLICKHOUSE_HOST for the embedded default"
            )
        warehouse = str(catalog.get("warehouse") or "")
        # A REST catalog's warehouse may be a name ("analytics"), not a location.
        if warehouse and (urlparse(warehouse).scheme == "file" or warehouse.startswith("/")):
            raise ValueError(
                f"catalog {catalog_name!r}'s warehouse {warehouse} is on local disk while the warm tier is the ClickHouse "
                f"server {host!r}, which reads the cold tier from the warehouse (checks, the _all views): put the "
                "warehouse on object storage (s3://...)"
            )
        return
    if choice == "embedded":
        return
    stray = sorted(n for n in os.environ if n.startswith("CLICKHOUSE_") and env_str(n))
    reasons = [f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} set"] if stray else []
    if catalog:
        reasons.append(f"catalog {catalog_name!r} (COLD_CATALOG) is configured")
    if reasons:
        raise ValueError(
            f"CLICKHOUSE_HOST is unset, which means the embedded warm tier under COLD_HOME, but {' and '.join(reasons)}: "
            "set CLICKHOUSE_HOST to the ClickHouse server, or COLD_WARM=embedded to use the embedded tier on purpose"
        )


@dataclass(frozen=True)
class Settings:
    """Everything cold-assets reads from the environment (docs/configuration.md lists each variable)."""

    home: Path  # COLD_HOME: all embedded state lives under it
    clickhouse_host: str | None  # unset: embedded chDB under COLD_HOME
    clickhouse_port: int | None
    clickhouse_user: str
    clickhouse_secure: bool
    clickhouse_database: str
    catalog_name: str
    # First hourly partition (UTC), COLD_PARTITIONS_START: in production the first hour the cold
    # tier covers. Unset: chosen once, the warm retention back (partitions.first_partition).
    partitions_start: str | None
    settle_lag_seconds: int  # appends stop this far behind the warm clock (inserts in flight)
    # Appends re-read this much before the watermark (and replace it in the same commit), so a
    # row that became visible after the watermark passed its ingested_at is still offloaded once.
    append_overlap_seconds: int
    late_grace_seconds: int  # an hour is closed once it ended settle lag + this long ago
    # Offload ranges per Iceberg commit of a ranged run: what a crash redoes, at most.
    checkpoint_hours: int
    warm_retention_days: int  # the warm tier's TTL: older hours exist only in cold
    ttl_margin_days: int  # the TTL guard alerts on unproven hours older than this
    heal_lookback_days: int  # how far back the self-healing sensor looks
    # A repair that did not fix its hour is requested again after this wait, doubled each time
    # (at most 6 h); after heal_max_attempts of them one alert names the hour and its last run.
    heal_retry_seconds: int
    heal_max_attempts: int
    # The TTL guard alerts when a federated view's cutover is this close to the TTL horizon:
    # past it, warm drops rows the view reads from warm, and the view has a gap.
    cutover_alert_hours: int
    chdb_lock_timeout_seconds: int
    spark_master: str  # local[2], or a cluster's master URL
    spark_driver_memory: str
    spark_jars_dir: Path  # the pinned jars (maintenance/jars.py), unless spark_packages is set
    spark_packages: str | None  # Maven coordinates for spark.jars.packages instead of the cache
    spark_s3: bool  # Spark also loads Iceberg's AWS bundle (pinned): default, an s3:// warehouse
    spark_conf: dict[str, str]  # more Spark settings (COLD_SPARK_CONF="key=value,key=value")

    @classmethod
    def from_env(cls) -> "Settings":
        home = Path(env_str("COLD_HOME", "./.cold")).expanduser().resolve()
        settle_lag = env_int("COLD_SETTLE_LAG_SECONDS", 30, minimum=0)
        retention = env_int("COLD_WARM_RETENTION_DAYS", 30, minimum=1)
        margin = env_int("COLD_TTL_MARGIN_DAYS", retention - 1, minimum=0)
        if margin >= retention:
            raise ValueError(
                f"COLD_TTL_MARGIN_DAYS={margin} must be less than COLD_WARM_RETENTION_DAYS={retention}: "
                "the TTL guard alerts between the two"
            )
        catalog_name = env_str("COLD_CATALOG", "iceberg")
        catalog = configured_catalog(catalog_name)
        check_tier_choice(catalog_name, catalog)
        return cls(
            home=home,
            clickhouse_host=env_str("CLICKHOUSE_HOST"),
            clickhouse_port=env_int("CLICKHOUSE_PORT", 0) or None,
            clickhouse_user=env_str("CLICKHOUSE_USER", "default"),
            clickhouse_secure=env_bool("CLICKHOUSE_SECURE"),
            clickhouse_database=env_str("CLICKHOUSE_DATABASE", "default"),
            catalog_name=catalog_name,
            partitions_start=env_str("COLD_PARTITIONS_START"),
            settle_lag_seconds=settle_lag,
            append_overlap_seconds=env_int("COLD_APPEND_OVERLAP_SECONDS", max(DEFAULT_OVERLAP_SECONDS, settle_lag), minimum=0),
            late_grace_seconds=env_int("COLD_LATE_GRACE_SECONDS", 600, minimum=0),
            checkpoint_hours=env_int("COLD_CHECKPOINT_HOURS", 24, minimum=1),
            warm_retention_days=retention,
            ttl_margin_days=margin,
            heal_lookback_days=env_int("COLD_HEAL_LOOKBACK_DAYS", 7, minimum=1),
            heal_retry_seconds=env_int("COLD_HEAL_RETRY_SECONDS", 600, minimum=0),
            heal_max_attempts=env_int("COLD_HEAL_MAX_ATTEMPTS", 3, minimum=1),
            cutover_alert_hours=env_int("COLD_CUTOVER_ALERT_HOURS", 24, minimum=0),
            chdb_lock_timeout_seconds=env_int("COLD_CHDB_LOCK_TIMEOUT_SECONDS", 600),
            spark_master=env_str("COLD_SPARK_MASTER", "local[2]"),
            spark_driver_memory=env_str("COLD_SPARK_DRIVER_MEMORY", "640m"),
            spark_jars_dir=Path(env_str("COLD_SPARK_JARS_DIR") or home / "spark-jars").expanduser().resolve(),
            spark_packages=env_str("COLD_SPARK_PACKAGES"),
            # Spark needs Iceberg's AWS bundle for a warehouse on S3: said by the warehouse itself.
            spark_s3=env_bool("COLD_SPARK_S3", str(catalog.get("warehouse", "")).startswith(("s3://", "s3a://"))),
            spark_conf=env_pairs("COLD_SPARK_CONF"),
        )

    @property
    def chdb_path(self) -> Path:
        return self.home / "warm"

    @property
    def embedded_catalog_path(self) -> Path:
        return self.home / "catalog.db"

    @property
    def embedded_catalog_uri(self) -> str:
        return f"sqlite:///{self.embedded_catalog_path}"

    @property
    def embedded_warehouse(self) -> str:
        return (self.home / "warehouse").as_uri()


# The catalog name of throwaway work (benchmarks, the class-data archive's warm-up): one no
# pyiceberg configuration defines, so IcebergResource falls back to the embedded catalog
# under the throwaway COLD_HOME whatever PYICEBERG_CATALOG__* or .pyiceberg.yaml configure.
THROWAWAY_CATALOG = "cold_assets_throwaway"


def throwaway(settings: Settings, home: Path) -> Settings:
    """`settings` for work on throwaway state under `home`: embedded chDB and an embedded
    catalog there, never the warm tier or the catalog the environment configures."""
    return replace(settings, home=home, clickhouse_host=None, catalog_name=THROWAWAY_CATALOG)


def throwaway_env(home: Path) -> dict[str, str]:
    """The environment of a child process doing throwaway work under `home`: none of the
    configured tiers' settings, and no alert webhook (its alerts would be about throwaway state)."""
    kept = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("CLICKHOUSE_", "PYICEBERG_CATALOG__")) and k != "COLD_ALERT_WEBHOOK_URL"
    }
    return {**kept, "COLD_HOME": str(home), "COLD_CATALOG": THROWAWAY_CATALOG, "COLD_WARM": "embedded"}


def s3_collection_name() -> str:
    """COLD_CLICKHOUSE_S3_COLLECTION: the ClickHouse named collection with the S3 warehouse's
    credentials, through which ClickHouse reads the cold tier (parity, federated views)."""
    return env_str("COLD_CLICKHOUSE_S3_COLLECTION") or "cold_s3"


def ddl_dir() -> Path:
    """The schemas the code reads: cold_assets/ddl, a link to the repository's ddl/ in a
    checkout and a copy of it in the wheel (COLD_DDL_DIR overrides)."""
    override = env_str("COLD_DDL_DIR")
    return Path(override) if override else Path(__file__).resolve().parent / "ddl"
