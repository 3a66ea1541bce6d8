"""Which tiers: the embedded ones only where nothing points at a deployment. An unset
CLICKHOUSE_HOST beside a configured catalog or another CLICKHOUSE_* variable, a server beside
no catalog or a warehouse on local disk: each is refused by name before anything is written,
not a quiet offload from an empty tier or into a local file."""

import os

import pytest

from cold_assets.settings import Settings


@pytest.fixture(autouse=True)
def clean(monkeypatch, tmp_path):
    for name in [n for n in os.environ if n.startswith(("CLICKHOUSE_", "PYICEBERG_CATALOG__"))] + ["COLD_WARM", "COLD_CATALOG"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLD_HOME", str(tmp_path / "home"))


def test_nothing_configured_is_the_embedded_default():
    assert Settings.from_env().clickhouse_host is None


def test_a_configured_catalog_without_clickhouse_host_is_refused_unless_embedded_is_chosen(monkeypatch, tmp_path):
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__URI", f"sqlite:///{tmp_path / 'production.db'}")
    with pytest.raises(ValueError, match=r"CLICKHOUSE_HOST is unset.*catalog 'iceberg' \(COLD_CATALOG\) is configured.*COLD_WARM=embedded"):
        Settings.from_env()
    monkeypatch.setenv("COLD_WARM", "embedded")
    assert Settings.from_env().clickhouse_host is None
    monkeypatch.setenv("CLICKHOUSE_HOST", "clickhouse")
    with pytest.raises(ValueError, match=r"COLD_WARM=embedded but CLICKHOUSE_HOST='clickhouse' is set"):
        Settings.from_env()
    monkeypatch.delenv("COLD_WARM")
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__WAREHOUSE", "s3://cold/warehouse")
    assert Settings.from_env().clickhouse_host == "clickhouse"
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__WAREHOUSE", (tmp_path / "warehouse").as_uri())
    with pytest.raises(ValueError, match=r"warehouse file://.* is on local disk while the warm tier is the ClickHouse server 'clickhouse'"):
        Settings.from_env()


def test_a_server_warm_tier_without_a_configured_catalog_is_refused(monkeypatch):
    monkeypatch.setenv("CLICKHOUSE_HOST", "clickhouse")
    with pytest.raises(ValueError, match=r"CLICKHOUSE_HOST='clickhouse' is set, but no catalog is configured for COLD_CATALOG='iceberg'"):
        Settings.from_env()


@pytest.mark.parametrize("name", ["CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_PORT", "CLICKHOUSE_HOSTNAME"])
def test_another_clickhouse_variable_without_the_host_is_refused_by_name(monkeypatch, name):
    monkeypatch.setenv(name, "8123" if name == "CLICKHOUSE_PORT" else "x")
    with pytest.raises(ValueError, match=rf"CLICKHOUSE_HOST is unset.*but {name} is set"):
        Settings.from_env()


def test_cold_warm_takes_one_of_its_two_values_and_server_needs_the_host(monkeypatch):
    monkeypatch.setenv("COLD_WARM", "chdb")
    with pytest.raises(ValueError, match=r"COLD_WARM='chdb' must be one of embedded, server"):
        Settings.from_env()
    monkeypatch.setenv("COLD_WARM", "server")
    with pytest.raises(ValueError, match=r"COLD_WARM=server but CLICKHOUSE_HOST is unset"):
        Settings.from_env()


def test_a_rest_catalogs_warehouse_name_is_no_local_path_and_an_s3_warehouse_turns_spark_s3_on(monkeypatch):
    monkeypatch.setenv("CLICKHOUSE_HOST", "clickhouse")
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__URI", "https://catalog.internal")
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__WAREHOUSE", "analytics")  # Polaris, Lakekeeper: a name
    assert not Settings.from_env().spark_s3
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__WAREHOUSE", "/srv/warehouse")
    with pytest.raises(ValueError, match=r"warehouse /srv/warehouse is on local disk"):
        Settings.from_env()
    monkeypatch.setenv("PYICEBERG_CATALOG__ICEBERG__WAREHOUSE", "s3://cold/warehouse")
    assert Settings.from_env().spark_s3  # the AWS bundle is loaded without being asked
    monkeypatch.setenv("COLD_SPARK_S3", "false")
    assert not Settings.from_env().spark_s3
