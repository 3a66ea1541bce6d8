"""The s3:// warehouse code path, against moto's S3 server on loopback.

moto is an S3 *emulator* (no S3-compatible server is packaged for these machines): it
stands in for MinIO or AWS S3. Everything else is real: pyiceberg's S3 file IO writing the
offload's files, ClickHouse's icebergS3 reading them back for the parity checks and the
federated view, and a Dagster instance."""

from datetime import timedelta

import boto3
import pytest
from moto.server import ThreadedMotoServer

from cold_assets.cold.ddl import ensure_cold_tables
from cold_assets.defs.resources import IcebergResource
from cold_assets.federation import federate
from cold_assets.partitions import hour_of
from cold_assets.settings import Settings
from cold_assets.tables import table_by_cold_name
from cold_assets_tests.support.offload_helpers import KEYS, START, assert_tiers_equal, check_results, feed, run_offload

BUCKET = "cold-tier"
BRONZE = table_by_cold_name("bronze_trades")


@pytest.fixture(scope="module")
def s3_emulator():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="emulator", aws_secret_access_key="emulator-secret", region_name="us-east-1"
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def test_offload_checks_and_the_federated_view_on_an_s3_warehouse(settings, warm, s3_emulator, monkeypatch, tmp_path):
    for name, value in {
        "TYPE": "sql",
        "URI": f"sqlite:///{tmp_path / 'catalog.db'}",
        "WAREHOUSE": f"s3://{BUCKET}/warehouse",
        "S3__ENDPOINT": s3_emulator,
        "S3__ACCESS_KEY_ID": "emulator",
        "S3__SECRET_ACCESS_KEY": "emulator-secret",
        "S3__REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(f"PYICEBERG_CATALOG__ICEBERG__{name}", value)
    monkeypatch.setenv("COLD_WARM", "embedded")  # the embedded warm tier beside a configured catalog, on purpose
    settings = Settings.from_env()
    cold = IcebergResource.from_settings(settings)
    ensure_cold_tables(cold.catalog())
    assert cold.catalog().load_table(BRONZE.cold_identifier).location().startswith(f"s3://{BUCKET}/")

    feed(warm, hours=len(KEYS), trades_per_hour=300)
    result, instance = run_offload(settings, KEYS)
    checks = check_results(instance, result.run_id)
    # Content parity ran for real (ClickHouse read the cold tier over S3): no warning.
    assert len(checks) == 20 and all(checks.values())
    hours = [hour_of(k) for k in KEYS]
    assert_tiers_equal(warm, cold, hours)
    s3 = boto3.client(
        "s3", endpoint_url=s3_emulator, aws_access_key_id="emulator", aws_secret_access_key="emulator-secret", region_name="us-east-1"
    )
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="warehouse/cold/bronze_trades/data/")["KeyCount"] > 0
    # Each check's read had a metadata file of its own (cold/read_metadata.py), deleted after it
    # (pyarrow's S3 delete leaves the folder's empty marker object).
    reads = s3.list_objects_v2(Bucket=BUCKET, Prefix="warehouse/cold/bronze_trades/metadata/cold-assets-reads/")
    assert [o["Key"].rsplit("/", 1)[1] for o in reads.get("Contents", [])] in ([], [""])

    with warm.connect() as client:
        end = hours[-1] + timedelta(hours=1)
        (bronze,) = federate(client, cold.catalog(), now=end + timedelta(hours=1), tables=[BRONZE])
        assert bronze.cutover == end and bronze.hours_proven == len(KEYS)  # each hour proven, cold read from S3
        definition = client.query("SELECT create_table_query FROM system.tables WHERE name = 'bronze_trades_all'").result_rows[0][0]
        assert "icebergS3(cold_s3" in definition and "emulator-secret" not in definition
        query = "SELECT trade_id, exchange, toString(price), exchange_ts FROM {t:Identifier} WHERE exchange_ts >= {lo:DateTime64(6, 'UTC')}"
        through_view = sorted(client.query(query, parameters={"t": "bronze_trades_all", "lo": START}).result_rows)
        warm_rows = sorted(client.query(query, parameters={"t": "bronze_trades", "lo": START}).result_rows)
    assert through_view == warm_rows and through_view
