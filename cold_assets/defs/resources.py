"""Dagster resources for the two tiers: ClickHouse (warm) and an Iceberg catalog (cold).

One code path for the embedded default and production; only the connection differs:
- warm: a ClickHouse server over HTTP(S) when `host` is set, else embedded chDB under COLD_HOME;
- cold: any pyiceberg catalog configured for `catalog_name` (PYICEBERG_CATALOG__<NAME>__* or
  .pyiceberg.yaml: SQL on PostgreSQL, REST, with a file:// or s3:// warehouse), else a SQLite
  catalog and a local warehouse under COLD_HOME.
"""

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager, nullcontext
from pathlib import Path

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from dagster import ConfigurableResource, InitResourceContext
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table
from pyiceberg.utils.config import Config

from cold_assets.internals import commits_and_loads_without_repeated_work
from cold_assets.settings import THROWAWAY_CATALOG, Settings
from cold_assets.warm.capabilities import EMBEDDED, SERVER, WarmCapabilities, declare
from cold_assets.warm.embedded_lock import exclusive_client, held_open


class ClickHouseResource(ConfigurableResource):
    """The warm tier. `connect()` yields a clickhouse-connect Client for the duration of a unit of work."""

    host: str | None = None  # None: embedded chDB at chdb_path
    port: int | None = None
    user: str = "default"
    # The password is never part of Dagster config: it is read from this environment variable.
    password_env_var: str = "CLICKHOUSE_PASSWORD"
    secure: bool = False
    database: str = "default"
    chdb_path: str = ""
    lock_timeout_seconds: int = 600

    @classmethod
    def from_settings(cls, settings: Settings) -> "ClickHouseResource":
        return cls(
            host=settings.clickhouse_host,
            port=settings.clickhouse_port,
            user=settings.clickhouse_user,
            secure=settings.clickhouse_secure,
            database=settings.clickhouse_database,
            chdb_path=str(settings.chdb_path),
            lock_timeout_seconds=settings.chdb_lock_timeout_seconds,
        )

    @property
    def embedded(self) -> bool:
        return not self.host

    @property
    def capabilities(self) -> WarmCapabilities:
        return EMBEDDED if self.embedded else SERVER

    def describe(self) -> str:
        if self.embedded:
            return f"chdb:{self.chdb_path}"
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.user}@{self.host}:{self.port or (8443 if self.secure else 8123)}/{self.database}"

    @staticmethod
    def _open_embedded(path: Path) -> Client:
        # chDB stores what SQL creates under its path, named collections too: with an s3://
        # warehouse that is the S3 secret ClickHouse reads the cold tier with (parity/checksums.py). chDB
        # has no memory-only store for them, so the folder is readable by its owner only.
        path.chmod(0o700)
        return clickhouse_connect.get_client(dsn=f"chdb://{path}")

    @contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Iterator["ClickHouseResource"]:
        """A run on the embedded tier keeps it open between its uses: its steps (one per table,
        one after another in the run's process) share one open instead of one each, about 0.1 s
        at demo volume, more as parts accumulate. It is let go whenever another process waits
        for it and no step is using it (embedded_lock.held_open), and threads of the run's
        process share it between uses."""
        held = held_open(Path(self.chdb_path)) if self.embedded and self.chdb_path else nullcontext()
        with held, super().yield_for_execution(context) as resource:
            yield resource

    @contextmanager
    def connect(self) -> Iterator[Client]:
        if self.embedded:
            path = Path(self.chdb_path)
            if not self.chdb_path:
                raise ValueError("ClickHouseResource: set host for a server, or chdb_path for embedded chDB")
            with exclusive_client(path, lambda: self._open_embedded(path), self.lock_timeout_seconds) as client:
                yield declare(client, EMBEDDED)
            return
        client = clickhouse_connect.get_client(
            host=self.host,
            port=self.port or (8443 if self.secure else 8123),
            username=self.user,
            password=os.environ.get(self.password_env_var, ""),
            secure=self.secure,
            database=self.database,
        )
        try:
            yield declare(client, SERVER)
        finally:
            client.close()


_WAL_DATABASES: set[Path] = set()  # embedded catalogs this process has put in WAL mode


class IcebergResource(ConfigurableResource):
    """The cold tier: a pyiceberg catalog, by name."""

    catalog_name: str = "iceberg"
    # Used only when no configuration exists for catalog_name (the embedded default).
    default_uri: str = ""
    default_warehouse: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> "IcebergResource":
        return cls(
            catalog_name=settings.catalog_name,
            default_uri=settings.embedded_catalog_uri,
            default_warehouse=settings.embedded_warehouse,
        )

    @property
    def embedded(self) -> bool:
        """No catalog is configured at all: the embedded SQLite catalog under COLD_HOME. A
        name with no configuration beside configured ones is a typo, not the embedded default:
        the cold tier would quietly go to a local file (and warm's TTL delete the only copy)."""
        config = Config()
        if config.get_catalog_config(self.catalog_name):
            return False
        known = config.get_known_catalogs()
        if known and self.catalog_name != THROWAWAY_CATALOG:  # (throwaway work says so by that name)
            raise ValueError(
                f"catalog {self.catalog_name!r} (COLD_CATALOG) has no pyiceberg configuration, but {sorted(known)} "
                f"{'has' if len(known) == 1 else 'have'}: set COLD_CATALOG to the one meant, or configure "
                f"{self.catalog_name!r} (PYICEBERG_CATALOG__{self.catalog_name.upper()}__URI, ...). The embedded "
                "catalog is used only where no catalog is configured at all."
            )
        return True

    @property
    def one_writer_at_a_time(self) -> bool:
        """The catalog is one SQLite file (the embedded default, or a configured sqlite URI):
        two commits at once wait on, or fail at, its lock."""
        return self.catalog_properties().get("uri", "").startswith("sqlite")

    def describe(self) -> str:
        """The catalog by name, type and warehouse; never its URI, which may carry a password."""
        properties = self.catalog_properties()
        kind = "embedded SQLite" if self.embedded else properties.get("type") or properties.get("py-catalog-impl") or "sql"
        warehouse = properties.get("warehouse") or "the catalog's own"
        return f"catalog {self.catalog_name!r} ({kind}, warehouse {warehouse})"

    def load_table(self, identifier: tuple[str, str]) -> Table:
        """A cold table, with a hint when it does not exist yet."""
        try:
            return self.catalog().load_table(identifier)
        except NoSuchTableError:
            raise NoSuchTableError(
                f"cold table {'.'.join(identifier)} does not exist in catalog {self.catalog_name!r}: "
                "run `cold-assets init` first"
            ) from None

    def catalog_properties(self) -> dict[str, str]:
        """The catalog's properties as pyiceberg sees them; Spark maintenance opens the same catalog."""
        if not self.embedded:
            return {key: str(value) for key, value in (Config().get_catalog_config(self.catalog_name) or {}).items()}
        if not self.default_uri:
            raise ValueError(
                f"no pyiceberg configuration for catalog {self.catalog_name!r} and no embedded default set"
            )
        return {"type": "sql", "uri": self.default_uri, "warehouse": self.default_warehouse}

    def catalog(self) -> Catalog:
        if not self.embedded:
            # Properties (URI, warehouse, S3 endpoint and keys) come from pyiceberg's own config,
            # read now: pyiceberg's module-level copy is read once, at import.
            return commits_and_loads_without_repeated_work(load_catalog(self.catalog_name, **self.catalog_properties()))
        properties = self.catalog_properties()
        database = Path(properties["uri"].removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        catalog = commits_and_loads_without_repeated_work(load_catalog(self.catalog_name, **properties))
        # Spark maintenance commits to the same file: with a write-ahead log, readers never
        # block its writer. The setting persists in the file: once per process is enough.
        if database not in _WAL_DATABASES:
            with closing(sqlite3.connect(database)) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
            _WAL_DATABASES.add(database)
        return catalog
