"""Embedded or server: decided once from Settings, declared by the resource, asked of a client."""

from dataclasses import replace

import pytest

from cold_assets.defs.resources import ClickHouseResource
from cold_assets.settings import Settings
from cold_assets.warm.capabilities import EMBEDDED, SERVER, capabilities_of, declare


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("COLD_HOME", str(tmp_path))
    monkeypatch.delenv("CLICKHOUSE_HOST", raising=False)
    return Settings.from_env()


def test_without_a_host_the_warm_tier_is_embedded_chdb_with_its_capabilities(settings):
    assert ClickHouseResource.from_settings(settings).capabilities is EMBEDDED
    assert EMBEDDED.reads_local_files and EMBEDDED.makes_its_s3_collection and EMBEDDED.one_process_at_a_time
    assert not EMBEDDED.runs_tables_in_parallel


def test_with_a_host_it_is_a_server_that_reads_no_local_file_and_runs_tables_in_parallel(settings):
    server = ClickHouseResource.from_settings(replace(settings, clickhouse_host="clickhouse.internal"))
    assert server.capabilities is SERVER
    assert SERVER.runs_tables_in_parallel
    assert not (SERVER.reads_local_files or SERVER.makes_its_s3_collection or SERVER.one_process_at_a_time)


def test_a_client_has_what_its_resource_declared_and_an_undeclared_one_is_taken_for_a_server():
    class Handle:  # any object a resource hands out; no ClickHouse behind it here
        pass

    declared, undeclared = Handle(), Handle()
    declare(declared, EMBEDDED)  # type: ignore[arg-type]
    assert capabilities_of(declared) is EMBEDDED  # type: ignore[arg-type]
    assert capabilities_of(undeclared) is SERVER  # type: ignore[arg-type]
