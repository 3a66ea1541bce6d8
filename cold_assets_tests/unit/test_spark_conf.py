"""How Spark opens the offload's catalog: settings derived from pyiceberg's, no JVM needed."""

import re

import pytest

from cold_assets.maintenance.spark import REDACTION_REGEX, spark_catalog_conf


def test_a_postgresql_catalog_keeps_its_url_parameters_such_as_sslmode():
    conf = spark_catalog_conf(
        "iceberg", {"type": "sql", "uri": "postgresql+psycopg2://cold:s3cret@db.internal:5433/iceberg?sslmode=require&sslrootcert=/etc/ca.pem"}
    )
    assert conf["spark.sql.catalog.iceberg.uri"] == "jdbc:postgresql://db.internal:5433/iceberg?sslmode=require&sslrootcert=%2Fetc%2Fca.pem"
    assert conf["spark.sql.catalog.iceberg.jdbc.user"] == "cold" and conf["spark.sql.catalog.iceberg.jdbc.password"] == "s3cret"
    assert "s3cret" not in conf["spark.sql.catalog.iceberg.uri"]


def test_spark_redacts_every_secret_the_catalog_settings_carry():
    rest = spark_catalog_conf(
        "iceberg",
        {"type": "rest", "uri": "https://catalog.internal", "credential": "client:secret", "token": "t",
         "warehouse": "s3://cold/warehouse", "s3.access-key-id": "AK", "s3.secret-access-key": "SK"},
    )
    sql = spark_catalog_conf("iceberg", {"type": "sql", "uri": "postgresql+psycopg2://u:p@h/db"})
    secret_values = {"client:secret", "t", "SK", "p"}
    secrets = [key for key, value in {**rest, **sql}.items() if value in secret_values]
    assert len(secrets) == 4
    assert all(re.search(REDACTION_REGEX, key) for key in secrets), secrets


def test_a_warehouse_on_s3_adds_the_pinned_aws_bundle_to_spark_and_to_what_is_checked(monkeypatch, tmp_path):
    from cold_assets.maintenance.jars import S3_JARS, SparkJarsError, jar_paths, pinned_jars
    from cold_assets.maintenance.spark import session_config
    from cold_assets.settings import Settings

    monkeypatch.setenv("COLD_HOME", str(tmp_path))
    monkeypatch.setenv("COLD_SPARK_JARS_DIR", str(tmp_path / "jars"))
    assert "iceberg-aws-bundle" not in session_config(Settings.from_env())["spark.jars"]
    monkeypatch.setenv("COLD_SPARK_S3", "true")
    settings = Settings.from_env()
    assert str(tmp_path / "jars" / S3_JARS[0].file) in session_config(settings)["spark.jars"].split(",")
    with pytest.raises(SparkJarsError, match=r"iceberg-aws-bundle-1\.10\.2\.jar.*`make jars`"):
        jar_paths(settings.spark_jars_dir, pinned_jars(settings.spark_s3))


def test_a_jar_from_maven_enters_the_cache_only_with_its_pinned_checksum(tmp_path):
    """A local HTTP server stands in for Maven Central (which this machine cannot reach)."""
    import hashlib
    import http.server
    import threading
    from functools import partial

    from cold_assets.maintenance.jars import PinnedJar, SparkJarsError, provision

    served = tmp_path / "served"
    served.mkdir()
    (served / "bundle.jar").write_bytes(b"PK\x03\x04 not really a jar")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/bundle.jar"
        good = PinnedJar("bundle.jar", hashlib.sha256((served / "bundle.jar").read_bytes()).hexdigest(), maven_url=url)
        cache = tmp_path / "cache"
        with pytest.raises(SparkJarsError, match="does not match the pinned"):
            provision(cache, (PinnedJar("bundle.jar", "0" * 64, maven_url=url),), log=lambda _: None)
        assert not (cache / "bundle.jar").exists()
        assert provision(cache, (good,), log=lambda _: None) == [cache / "bundle.jar"]
        with pytest.raises(SparkJarsError, match="could not download"):
            provision(tmp_path / "other", (PinnedJar("x.jar", "0" * 64, maven_url=url + ".missing"),), log=lambda _: None)
    finally:
        server.shutdown()
