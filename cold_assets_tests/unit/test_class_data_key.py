"""The class-data archive's name follows every file the JVM checks it against."""

import os
import sys
import types
from pathlib import Path

import pytest

from cold_assets.maintenance import class_data
from cold_assets.maintenance.jars import PinnedJar


def test_a_spark_jar_installed_again_at_the_same_version_names_another_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A venv made anew reinstalls pyspark's jars with new modification times; the JVM then
    refused the archive dumped with the old ones and stopped ("A jar file is not the one used
    while building the shared archive file"), so every maintenance run failed to start."""
    runtime = tmp_path / "jdk" / "lib" / "modules"
    runtime.parent.mkdir(parents=True)
    runtime.write_bytes(b"modules")
    spark = tmp_path / "pyspark"
    (spark / "jars").mkdir(parents=True)
    jar = spark / "jars" / "curator-client-2.13.0.jar"
    jar.write_bytes(b"PK")
    jars_dir = tmp_path / "spark-jars"
    jars_dir.mkdir()
    (jars_dir / "iceberg.jar").write_bytes(b"PK")
    pinned = (PinnedJar(file="iceberg.jar", sha256="0" * 64),)
    monkeypatch.setattr(class_data, "_java_runtime", lambda: runtime)
    installed = types.SimpleNamespace(__file__=str(spark / "__init__.py"), __version__="3.5.9")
    monkeypatch.setitem(sys.modules, "pyspark", installed)

    first = class_data.archive_path(jars_dir, pinned)
    assert first == class_data.archive_path(jars_dir, pinned)  # stable while nothing changes
    os.utime(jar, ns=(jar.stat().st_atime_ns, jar.stat().st_mtime_ns + 1_000_000_000))
    reinstalled = class_data.archive_path(jars_dir, pinned)
    assert reinstalled != first
    (jars_dir / "iceberg.jar").write_bytes(b"PK again")  # the pinned jars provisioned again
    assert class_data.archive_path(jars_dir, pinned) not in (first, reinstalled)
