"""How Spark opens the offload's catalog: settings derived from pyiceberg's, no JVM needed."""

import re

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
