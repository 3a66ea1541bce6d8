"""A class-data-sharing archive for the maintenance JVM (Java's AppCDS).

Each nightly job starts a JVM that loads some 20,000 classes (Spark, Scala, Hadoop, Iceberg)
before its first procedure returns: about 4 s of a run's startup on 2 cores. A dynamic CDS
archive holds those classes already parsed and verified; the JVM maps it instead
(`-XX:SharedArchiveFile`). `cold-assets jars` builds it once, after the jars, by running the
nightly maintenance (compaction, expiry, orphans) on a throwaway table with
`-XX:ArchiveClassesAtExit`.

The archive is only valid for the JVM, the Spark distribution and the jars it was dumped
with, as the JVM checks them: each jar of the class path by size and modification time. A
jar that differs stops the JVM ("A jar file is not the one used while building the shared
archive file"): pyspark installed again at the same version (a venv made anew), or the
pinned jars provisioned again, is enough. So the archive's file name carries a key over
the JVM's runtime and every jar's path, size and modification time; a stale one is simply
not used, and `cold-assets jars` builds the one that fits. With no archive the JVM loads
classes as usual: slower, never wrong.
"""

import hashlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cold_assets.maintenance.jars import PinnedJar, java_executable
from cold_assets.settings import throwaway_env

ARCHIVE_PREFIX = "spark-classes-"


def _java_runtime() -> Path | None:
    """The runtime image (lib/modules) of the java Spark will start."""
    java = java_executable()
    if not java or not Path(java).exists():
        return None
    modules = Path(java).resolve().parent.parent / "lib" / "modules"
    return modules if modules.exists() else None


def files_key(files: list[Path]) -> str:
    """What the JVM checks of each file an archive was dumped with: path, size, modification
    time (a file that is missing counts as such)."""
    parts = []
    for path in sorted(files):
        try:
            stat = path.stat()
            parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
        except FileNotFoundError:
            parts.append(f"{path}:missing")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def archive_path(jars_dir: Path, jars: tuple[PinnedJar, ...]) -> Path | None:
    """Where the archive for this JVM, this pyspark and these jars lives (None: no java).
    Keyed by file identity, not by running `java -version`: this runs when the definitions
    load (a few hundred stat calls)."""
    import pyspark

    runtime = _java_runtime()
    if runtime is None:
        return None
    spark_jars = sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar"))
    key = files_key([runtime, *spark_jars, *(jars_dir / jar.file for jar in jars)])
    return jars_dir / f"{ARCHIVE_PREFIX}{key}.jsa"


def java_options(jars_dir: Path, jars: tuple[PinnedJar, ...]) -> str:
    """The JVM option that maps the archive, or nothing when there is none for this JVM."""
    path = archive_path(jars_dir, jars)
    return f"-XX:SharedArchiveFile={path}" if path is not None and path.exists() else ""


def _exercise(home: Path, dump_to: Path) -> None:
    """The classes of a night's work: a SparkResource on a SQLite catalog, a compaction,
    a manifest rewrite, an expiry and an orphan listing on a throwaway silver table."""
    from dataclasses import replace

    import pyarrow as pa
    from dagster import build_init_resource_context
    from pyspark import SparkContext

    from cold_assets.cold.ddl import ensure_cold_tables
    from cold_assets.defs.resources import IcebergResource
    from cold_assets.maintenance.operations import compact, expire_snapshots, remove_orphan_files, rewrite_manifests
    from cold_assets.maintenance.spark import SparkResource
    from cold_assets.settings import Settings, throwaway
    from cold_assets.tables import table_by_cold_name

    from_env = Settings.from_env()
    # A throwaway silver table, never the configured catalog's.
    settings = replace(throwaway(from_env, home), spark_conf={**from_env.spark_conf, "spark.ui.showConsoleProgress": "false"})
    iceberg = IcebergResource.from_settings(settings)
    ensure_cold_tables(iceberg.catalog())
    spec = table_by_cold_name("silver_trades")
    table = iceberg.load_table(spec.cold_identifier)
    now = datetime.now(UTC)
    yesterday = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=20)
    schema = table.schema().as_arrow()
    for hour in range(3):  # three commits in one closed day partition: something to merge
        at = yesterday + timedelta(hours=hour)
        row: dict[str, object] = {field.name: None for field in schema}
        row.update(
            exchange="binance", symbol="BTC-USDT", exchange_symbol="BTCUSDT", base_asset="BTC", quote_asset="USDT",
            trade_id=hour, price=1, quantity=1, quote_quantity=1, side="buy", is_buyer_maker=False,
            exchange_ts=at, received_at=at, ingested_at=at,
        )
        table.append(pa.Table.from_pylist([row], schema=schema))
    spark = SparkResource.from_settings(settings, iceberg)
    java_opts = spark.spark_config["spark.driver.extraJavaOptions"]
    spark = spark.model_copy(
        update={"spark_config": {**spark.spark_config, "spark.driver.extraJavaOptions": f"{java_opts} -XX:ArchiveClassesAtExit={dump_to}"}}
    )
    context = build_init_resource_context()
    spark.setup_for_execution(context)
    session = spark.spark_session
    compact(session, iceberg.load_table(spec.cold_identifier), spec, spark.catalog_name, now, lookback_days=2)
    rewrite_manifests(session, spec, spark.catalog_name)  # compact() only calls it past 8 manifests
    expire_snapshots(session, iceberg.load_table(spec.cold_identifier), spec, spark.catalog_name, now)
    remove_orphan_files(session, spec, spark.catalog_name, now - timedelta(days=3), now, dry_run=True)
    gateway: Any = SparkContext._gateway  # py4j's gateway to the JVM: untyped
    spark.teardown_after_execution(context)
    # The JVM dumps the archive as it exits, which it does when its stdin closes: wait for it.
    gateway.proc.stdin.close()
    gateway.proc.wait(timeout=300)


def ensure_archive(jars_dir: Path, jars: tuple[PinnedJar, ...], log: Callable[[str], object] = print) -> Path | None:
    """Builds the archive for this JVM and these jars unless it is there; returns its path,
    or None when it could not be built (maintenance then runs without it)."""
    target = archive_path(jars_dir, jars)
    if target is None:
        log("class-data archive not built: no java (maintenance needs Java 17)")
        return None
    if target.exists():
        return target
    for stale in jars_dir.glob(f"{ARCHIVE_PREFIX}*.jsa"):
        stale.unlink()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spark-cds-", dir=jars_dir) as tmp:
        dump_to = Path(tmp) / target.name
        child = subprocess.run(
            [sys.executable, "-W", "ignore", "-m", "cold_assets.maintenance.class_data", tmp, str(dump_to)],
            env={**throwaway_env(Path(tmp)), "COLD_SPARK_JARS_DIR": str(jars_dir)}, capture_output=True, text=True,
        )
        if child.returncode != 0 or not dump_to.exists():
            log(f"class-data archive not built (maintenance runs without it):\n{child.stderr[-2000:]}")
            return None
        dump_to.replace(target)  # whole, or not at all
    log(f"class-data archive for the maintenance JVM: {target.name} ({time.perf_counter() - started:.0f} s)")
    return target


if __name__ == "__main__":
    _exercise(Path(sys.argv[1]), Path(sys.argv[2]))
