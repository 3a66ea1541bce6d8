"""The Spark session for maintenance: dagster-pyspark's PySparkResource, opened on the same
Iceberg catalog, under the same name, as the offload's pyiceberg catalog.

- Session settings (master, memory, jars, Iceberg's SQL extensions) are the resource's
  `spark_config`, visible in the Dagster UI. None of them is a secret.
- The catalog settings are derived when the session opens, from the pyiceberg properties of
  the catalog (resources.IcebergResource): a SqlCatalog becomes Iceberg's JDBC catalog on
  the same database (SQLite or PostgreSQL), a REST catalog a REST catalog. They may carry a
  password, so they are set on the running session only, never in Dagster config or logs.
- Java 17 and the pinned jars are checked first, so a machine without them gets a message
  that says what to install instead of a JVM stack trace. The offload itself needs no Java.
"""

import re
import subprocess
from pathlib import Path
from urllib.parse import urlencode

from dagster import InitResourceContext
from dagster_pyspark import PySparkResource
from sqlalchemy.engine import make_url

from cold_assets.defs.resources import IcebergResource
from cold_assets.maintenance.class_data import java_options
from cold_assets.maintenance.jars import JavaMissing, jar_paths, java_executable, pinned_jars
from cold_assets.settings import Settings

JAVA_MAJOR = 17


class UnsupportedSparkCatalog(ValueError):
    pass


def java_major_version(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except OSError:
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 else major  # "1.8" is Java 8


def require_spark(settings: Settings) -> None:
    """What the maintenance needs before it starts, checked before work that ends in it (a
    benchmark's hours of set-up): Java 17, and the pinned jars unless Spark resolves its own."""
    require_java()
    if not settings.spark_packages:
        jar_paths(settings.spark_jars_dir, pinned_jars(settings.spark_s3))


def require_java() -> str:
    """The java executable Spark will use (JAVA_HOME first, as Spark does), if it is Java 17."""
    java = java_executable()
    found = java_major_version(java) if java else None
    if java is None or found != JAVA_MAJOR:
        where = f"Java {found} at {java}" if found else (f"no working java at {java}" if java else "no java on PATH")
        raise JavaMissing(
            f"Spark maintenance needs Java {JAVA_MAJOR} ({where}). Install it (Debian: "
            f"apt-get install openjdk-{JAVA_MAJOR}-jre-headless) or point JAVA_HOME at a Java "
            f"{JAVA_MAJOR} installation. The offload, checks and audit do not need Java."
        )
    return java


def spark_catalog_conf(catalog_name: str, properties: dict[str, str]) -> dict[str, str]:
    """Spark settings that open the pyiceberg catalog described by `properties`."""
    prefix = f"spark.sql.catalog.{catalog_name}"
    conf = {prefix: "org.apache.iceberg.spark.SparkCatalog"}
    kind = properties.get("type") or ("rest" if properties.get("uri", "").startswith("http") else "sql")
    if kind == "sql":
        url = make_url(properties["uri"])
        backend = url.get_backend_name()
        if backend == "sqlite":
            jdbc = f"jdbc:sqlite:{url.database}"
            # pyiceberg commits to the same file; wait for its lock instead of failing.
            conf[f"{prefix}.jdbc.busy_timeout"] = "30000"
        elif backend == "postgresql":
            jdbc = f"jdbc:postgresql://{url.host or 'localhost'}:{url.port or 5432}/{url.database}"
            if url.query:  # sslmode, sslrootcert, ...: pgjdbc takes the same names as libpq
                jdbc += "?" + urlencode(
                    [(k, v) for k, values in url.query.items() for v in ((values,) if isinstance(values, str) else values)]
                )
            if url.username:
                conf[f"{prefix}.jdbc.user"] = url.username
            if url.password:
                conf[f"{prefix}.jdbc.password"] = url.password
        else:
            raise UnsupportedSparkCatalog(f"catalog {catalog_name!r}: SQL backend {backend!r} has no JDBC mapping (sqlite, postgresql)")
        conf[f"{prefix}.type"] = "jdbc"
        conf[f"{prefix}.uri"] = jdbc
        # pyiceberg's SqlCatalog creates the catalog's tables. Iceberg's own check for them
        # leaves its DatabaseMetaData.getTables result open, and on SQLite that pooled
        # connection then keeps reading the file as it was: stale metadata, and every Spark
        # commit after a pyiceberg commit fails with SQLITE_BUSY_SNAPSHOT (tested).
        conf[f"{prefix}.jdbc.init-catalog-tables"] = "false"
    elif kind == "rest":
        conf[f"{prefix}.type"] = "rest"
        conf[f"{prefix}.uri"] = properties["uri"]
        for key in ("credential", "token", "scope", "oauth2-server-uri"):
            if key in properties:
                conf[f"{prefix}.{key}"] = properties[key]
    else:
        raise UnsupportedSparkCatalog(f"catalog {catalog_name!r} of type {kind!r}: Spark maintenance supports sql and rest")
    if properties.get("warehouse"):
        conf[f"{prefix}.warehouse"] = properties["warehouse"]
    s3 = {key: value for key, value in properties.items() if key.startswith("s3.")}
    if s3 or properties.get("warehouse", "").startswith("s3"):
        # Iceberg's own S3 client (needs org.apache.iceberg:iceberg-aws-bundle, see docs/deploy.md).
        conf[f"{prefix}.io-impl"] = "org.apache.iceberg.aws.s3.S3FileIO"
        for key in ("s3.endpoint", "s3.access-key-id", "s3.secret-access-key", "s3.path-style-access"):
            if key in s3:
                conf[f"{prefix}.{key}"] = s3[key]
        if "s3.region" in s3:
            conf[f"{prefix}.client.region"] = s3["s3.region"]
    return conf


# What Spark redacts from its logs, event logs and UI: its default plus what the Iceberg
# catalog settings carry (jdbc.password, s3.secret-access-key, credential, token).
REDACTION_REGEX = r"(?i)secret|password|token|access[.]key|credential"


def session_config(settings: Settings) -> dict[str, str]:
    """The non-secret session settings: PySparkResource's spark_config. COLD_SPARK_CONF adds
    to or overrides them (a cluster, bigger volumes)."""
    local = re.fullmatch(r"local\[(\d+)\]", settings.spark_master)
    parallelism = local.group(1) if local else "8"
    conf = {
        "spark.master": settings.spark_master,
        "spark.app.name": "cold-assets-maintenance",
        "spark.driver.memory": settings.spark_driver_memory,
        # A night's maintenance is many small jobs in a short-lived JVM: the client compiler
        # alone spends less CPU on compiling and less memory on code, and the serial
        # collector has the smallest footprint under a 1 GB heap (bench maintenance: about
        # 30% less wall time and 1.05 GB -> 0.72 GB peak RSS for the JVM).
        "spark.driver.extraJavaOptions": "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=96m",
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": parallelism,
        "spark.default.parallelism": parallelism,
        "spark.sql.adaptive.enabled": "false",  # re-planning small jobs costs more than it saves
        "spark.ui.enabled": "false",
        # Spark's default pattern misses the REST catalog's `credential` (client id:secret).
        "spark.redaction.regex": REDACTION_REGEX,
        "spark.local.dir": str(settings.home / "spark-tmp"),
    }
    if settings.spark_packages:
        conf["spark.jars.packages"] = settings.spark_packages
        conf["spark.jars.ivy"] = str(settings.home / "ivy")  # resolved once, then cached
    else:
        jars = pinned_jars(settings.spark_s3)
        conf["spark.jars"] = ",".join(str(settings.spark_jars_dir / jar.file) for jar in jars)
        # The classes of these jars and of Spark, pre-parsed by `cold-assets jars` (maintenance/class_data.py).
        archive = java_options(settings.spark_jars_dir, jars)
        if archive:
            conf["spark.driver.extraJavaOptions"] += f" {archive}"
    return conf | settings.spark_conf


class SparkResource(PySparkResource):
    """PySparkResource for Iceberg maintenance on the cold catalog (see the module docstring)."""

    iceberg: IcebergResource
    jars_dir: str = ""  # checked before the JVM starts, unless spark.jars.packages is used
    s3_jars: bool = False  # S3's jars are checked too (COLD_SPARK_S3)

    @classmethod
    def from_settings(cls, settings: Settings, iceberg: IcebergResource) -> "SparkResource":
        return cls(spark_config=session_config(settings), iceberg=iceberg, jars_dir=str(settings.spark_jars_dir),
                   s3_jars=settings.spark_s3)

    @property
    def catalog_name(self) -> str:
        return self.iceberg.catalog_name

    def setup_for_execution(self, context: InitResourceContext) -> None:
        require_java()
        if "spark.jars.packages" not in self.spark_config:
            jar_paths(Path(self.jars_dir), pinned_jars(self.s3_jars))
        local_dir = self.spark_config.get("spark.local.dir")
        if local_dir:
            Path(local_dir).mkdir(parents=True, exist_ok=True)
        super().setup_for_execution(context)
        # Catalogs load lazily, on first use: setting them on the running session is enough,
        # and keeps a catalog password out of the resource's config.
        for key, value in spark_catalog_conf(self.catalog_name, self.iceberg.catalog_properties()).items():
            self.spark_session.conf.set(key, value)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        # A new run may open another catalog: never hand it this session's cached one.
        if self.spark_session is not None:
            self.spark_session.stop()
