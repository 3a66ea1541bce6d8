"""The private APIs cold-assets uses (cold_assets/internals.py), held to the names, fields
and parameters its code relies on: a dependency's new version that changes one fails here,
by name, instead of in a sensor tick or an offload."""

import gc
import inspect
import weakref

import pyarrow as pa
import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance, DailyPartitionsDefinition, asset, define_asset_job
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField

from cold_assets import internals
from cold_assets_tests.support.offload_helpers import count_metadata_parses


def test_the_check_history_reads_records_with_the_fields_and_filters_it_uses():
    parameters = inspect.signature(internals.EventLogStorage.get_asset_check_execution_history).parameters
    assert {"check_key", "limit", "cursor"} <= set(parameters)  # check_history.follow_check pages by id
    fields = list(inspect.signature(internals.AssetCheckExecutionRecord).parameters)
    assert {"id", "run_id", "status", "event", "create_timestamp"} <= set(fields)
    assert {s.value for s in internals.COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES} == {"SUCCEEDED", "FAILED"}
    assert internals.AssetCheckExecutionRecordStatus.PLANNED.value == "PLANNED"
    with DagsterInstance.ephemeral() as instance:  # the storage the sensors read, answering the call they make
        key = AssetCheckKey(AssetKey(["cold", "raw_trades"]), "row_count_parity")
        assert isinstance(instance.event_log_storage, internals.EventLogStorage)
        assert list(instance.event_log_storage.get_asset_check_execution_history(key, limit=10)) == []


def test_the_backfill_filter_takes_statuses_and_requested_is_one():
    requested = internals.BulkActionsFilter(statuses=[internals.BulkActionStatus.REQUESTED])
    with DagsterInstance.ephemeral() as instance:  # as healing.py asks for the backfills in progress
        assert list(instance.get_backfills(filters=requested)) == []


def test_define_asset_job_returns_the_type_the_offload_job_is_annotated_with():
    @asset(partitions_def=DailyPartitionsDefinition(start_date="2026-01-01"))
    def a() -> None: ...

    assert isinstance(define_asset_job("j", selection=[a]), internals.UnresolvedAssetJobDefinition)


def test_pyiceberg_maps_the_parquet_properties_and_checks_arrow_schemas_as_files_does():
    options = internals.parquet_writer_kwargs({"write.parquet.compression-codec": "zstd"})
    assert options["compression"] == "zstd" and "write_batch_size" in options  # files.parquet_options pops it
    parameters = inspect.signature(internals.check_pyarrow_schema_compatible).parameters
    assert list(parameters)[:2] == ["requested_schema", "provided_schema"] and "format_version" in parameters
    schema = Schema(NestedField(1, "trade_id", LongType(), required=True))
    internals.check_pyarrow_schema_compatible(schema, pa.schema([pa.field("trade_id", pa.int64(), nullable=False)]), format_version=2)
    with pytest.raises(ValueError):
        internals.check_pyarrow_schema_compatible(schema, pa.schema([pa.field("other", pa.string())]), format_version=2)


def test_a_table_built_around_its_metadata_commits_without_retries_and_leaves_the_table_as_it_was(tmp_path):
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import TableProperties

    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path / 'c.db'}", warehouse=tmp_path.as_uri())
    catalog.create_namespace("cold")
    table = catalog.create_table(("cold", "t"), schema=Schema(NestedField(1, "trade_id", LongType(), required=True)))
    once = internals.table_without_commit_retries(table)
    assert once.metadata.properties[TableProperties.COMMIT_NUM_RETRIES] == "0"
    assert (once.name(), once.metadata_location, once.catalog) == (table.name(), table.metadata_location, table.catalog)
    with once.transaction() as tx:  # a commit through it lands on the catalog's table
        tx.append(pa.table({"trade_id": pa.array([1], pa.int64())}, schema=pa.schema([pa.field("trade_id", pa.int64(), nullable=False)])))
    reloaded = catalog.load_table(("cold", "t"))
    assert len(reloaded.scan().to_arrow()) == 1
    assert TableProperties.COMMIT_NUM_RETRIES not in reloaded.metadata.properties  # the stored property untouched


def test_the_overwrite_leaves_out_manifests_carried_with_no_live_file(tmp_path):
    """pyiceberg's overwrite producer, held to the constructor and the hook the subclass uses:
    each overwrite writes a manifest of the files it deleted; the next snapshot lists it no more."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=tmp_path.as_uri())
    catalog.create_namespace("n")
    schema = Schema(NestedField(1, "v", LongType(), required=False))
    table, elsewhere = catalog.create_table("n.t", schema), catalog.create_table("n.files", schema)
    table.append(pa.table({"v": pa.array([0], pa.int64())}))
    for value in (1, 2, 3):  # each overwrite drops the table's file and adds a new one
        elsewhere = elsewhere.refresh()
        elsewhere.append(pa.table({"v": pa.array([value], pa.int64())}))
        new = next(t.file for t in elsewhere.refresh().scan(row_filter=f"v == {value}").plan_files())
        table = table.refresh()
        (old,) = [t.file for t in table.scan().plan_files()]
        tx = internals.transaction(table)
        with internals.overwrite_of_live_manifests(tx, table, {"step": str(value)}) as overwrite:
            overwrite.delete_data_file(old)
            overwrite.append_data_file(new)
        tx.commit_transaction()
    table = table.refresh()
    current = table.current_snapshot()
    assert current.summary.operation.value == "overwrite" and current.summary["step"] == "3"
    manifests = current.manifests(table.io)
    # Its added files and its own deletes: the two earlier overwrites' delete manifests are gone.
    assert len(manifests) == 2, [(m.added_snapshot_id, m.added_files_count, m.deleted_files_count) for m in manifests]
    assert all(m.has_added_files() or m.has_existing_files() or m.added_snapshot_id == current.snapshot_id for m in manifests)
    assert table.scan().to_arrow()["v"].to_pylist() == [3]


def test_a_transaction_computes_its_metadata_once_per_staged_state_and_commits_what_pyiceberg_would(tmp_path, monkeypatch):
    """pyiceberg 0.12 replays the staged updates and deep-copies the metadata at every read of
    Transaction.table_metadata; ours reads it once per state, and a staged update or a refresh
    (new objects for `_updates`, or the table's metadata) makes it read again. What it computes
    is what pyiceberg's update_table_metadata does, without copying the table's history."""
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table.update import update_table_metadata

    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path / 'c.db'}", warehouse=tmp_path.as_uri())
    catalog.create_namespace("cold")
    table = catalog.create_table(("cold", "t"), schema=Schema(NestedField(1, "trade_id", LongType(), required=True)))
    table.append(pa.Table.from_pylist([{"trade_id": 1}], schema=pa.schema([pa.field("trade_id", pa.int64(), nullable=False)])))
    computed = []
    staged_metadata = internals.staged_metadata

    def counted(*args, **kwargs):
        computed.append(1)
        return staged_metadata(*args, **kwargs)

    monkeypatch.setattr(internals, "staged_metadata", counted)
    tx = internals.transaction(table)
    assert isinstance(tx._updates, tuple) and tx._table is table  # the state the cache is keyed on
    first = tx.table_metadata
    assert first is table.metadata and len(computed) == 1  # nothing staged: the table's own, no copy
    tx.set_properties({"k": "v"})  # a staged update: computed, with it
    staged = tx.table_metadata
    assert staged.properties["k"] == "v" and len(computed) == 2
    # pyiceberg's own result, less the copy: the history is the table's own objects
    pyiceberg_result = update_table_metadata(table.metadata, tx._updates)
    assert staged.model_dump(exclude={"last_updated_ms"}) == pyiceberg_result.model_dump(exclude={"last_updated_ms"})
    assert staged.snapshots[0] is table.metadata.snapshots[0] and pyiceberg_result.snapshots[0] is not table.metadata.snapshots[0]
    assert table.metadata.properties.get("k") is None  # the table's metadata is left as it was
    computed.clear()
    assert tx.table_metadata is staged and not computed  # once per state
    with tx.update_snapshot().fast_append() as append:  # the producer reads it many times: once here
        for task in table.scan().plan_files():
            append.append_data_file(task.file)
    reads = len(computed)
    committed = tx.commit_transaction()
    assert reads <= 5, reads  # pyiceberg alone: one per read, about 17 per commit
    assert committed.metadata.properties["k"] == "v"
    assert [s.summary.operation.value for s in committed.snapshots()] == ["append", "append"]
    assert committed.scan().to_arrow().num_rows == 2


@pytest.mark.parametrize("merge", [True, False])
def test_the_overwrite_merges_manifests_as_a_merge_append_would(tmp_path, merge):
    """pyiceberg 0.12's overwrite never merges manifests: a day of 15-minute commits that each
    add files left a manifest apiece. Ours merges them like a merge-append
    (commit.manifest-merge.enabled, up to commit.manifest.target-size-bytes), through
    pyiceberg's merge manager, and keeps every live file."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=tmp_path.as_uri())
    catalog.create_namespace("n")
    schema = Schema(NestedField(1, "v", LongType(), required=False))
    properties = {"commit.manifest-merge.enabled": str(merge).lower(), "commit.manifest.target-size-bytes": "16384"}
    table, elsewhere = catalog.create_table("n.t", schema, properties=properties), catalog.create_table("n.files", schema)
    table.append(pa.table({"v": pa.array([0], pa.int64())}))
    for value in range(1, 25):  # each commit adds two files and drops one of the last commit's
        elsewhere.append(pa.table({"v": pa.array([value * 10], pa.int64())}))
        elsewhere.append(pa.table({"v": pa.array([value * 10 + 1], pa.int64())}))
        elsewhere = elsewhere.refresh()
        new = [t.file for t in elsewhere.scan(row_filter=f"v >= {value * 10} and v <= {value * 10 + 1}").plan_files()]
        table = table.refresh()
        dropped = [t.file for t in table.scan(row_filter=f"v == {(value - 1) * 10 + 1 if value > 1 else 0}").plan_files()]
        tx = internals.transaction(table)
        with internals.overwrite_of_live_manifests(tx, table, {"step": str(value)}) as overwrite:
            for data_file in dropped:
                overwrite.delete_data_file(data_file)
            for data_file in new:
                overwrite.append_data_file(data_file)
        tx.commit_transaction()
    table = table.refresh()
    assert sorted(table.scan().to_arrow()["v"].to_pylist()) == [v * 10 for v in range(1, 25)] + [241]
    manifests = table.current_snapshot().manifests(table.io)
    if merge:
        assert len(manifests) <= 6, [(m.manifest_length, m.added_files_count, m.existing_files_count) for m in manifests]
    else:
        assert len(manifests) >= 24  # one more a commit: what the merge bounds
    # No manifest is left on disk that no snapshot lists: what a commit merged away it deleted.
    listed = {m.manifest_path.removeprefix("file://") for s in table.snapshots() for m in s.manifests(table.io)}
    on_disk = {str(f) for f in (tmp_path / "n" / "t" / "metadata").glob("*-m*.avro")}
    assert on_disk == listed, sorted(on_disk - listed)[:3]


def test_the_sensors_cursors_and_last_ticks_are_read_from_their_stored_states():
    from dagster import instance_for_test
    from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteInstigatorOrigin, RemoteRepositoryOrigin
    from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, TickData
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._utils.error import SerializableErrorInfo

    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="cold_assets.definitions"))
    origin = RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"), "ttl_guard")
    with instance_for_test() as instance:  # as the exporter reads the alert counts (a SQLite schedule storage)
        state = InstigatorState(origin, internals.InstigatorType.SENSOR, InstigatorStatus.RUNNING,
                                internals.SensorInstigatorData(cursor='{"alerts_sent": 3}'))
        instance.add_instigator_state(state)
        assert internals.sensor_states(instance, ("ttl_guard",)) == {
            "ttl_guard": internals.SensorState('{"alerts_sent": 3}', None, False)
        }
        instance.create_tick(TickData(
            instigator_origin_id=state.instigator_origin_id, instigator_name="ttl_guard",
            instigator_type=internals.InstigatorType.SENSOR, status=internals.TickStatus.FAILURE, timestamp=1000.0,
            selector_id=state.selector_id, error=SerializableErrorInfo("the warm tier did not answer", [], "OSError"),
        ))
        assert internals.sensor_states(instance, ("ttl_guard", "self_healing")) == {
            "ttl_guard": internals.SensorState('{"alerts_sent": 3}', 1000.0, True)
        }


def test_the_metrics_evaluators_tell_from_a_file_s_statistics_whether_a_filter_may_or_must_match_its_rows():
    from pyiceberg.expressions import GreaterThanOrEqual, LessThan
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    schema = Schema(NestedField(1, "n", LongType(), required=True))
    # A file holding n from 10 to 20 (the bounds as Iceberg serializes a long: 8 bytes, little-endian).
    data_file = DataFile.from_args(
        content=DataFileContent.DATA, file_path="f.parquet", file_format=FileFormat.PARQUET, partition=Record(),
        record_count=5, file_size_in_bytes=100, value_counts={1: 5}, null_value_counts={1: 0},
        lower_bounds={1: (10).to_bytes(8, "little")}, upper_bounds={1: (20).to_bytes(8, "little")},
    )
    expressions = (LessThan("n", 30), GreaterThanOrEqual("n", 15), GreaterThanOrEqual("n", 21))
    inside, across, outside = (internals.file_statistics_test(schema, e) for e in expressions)
    assert inside.must_match(data_file) and inside.may_match(data_file)
    assert not across.must_match(data_file) and across.may_match(data_file)
    assert not outside.may_match(data_file)


def test_a_metastore_catalog_stages_a_commit_as_pyiceberg_would_without_copying_the_history(tmp_path):
    """pyiceberg 0.12's `_update_and_stage_table`, held to its parameters and result: ours
    stages the same metadata, file location and metadata log as pyiceberg's own for an
    append, a schema change, a property and an expiry (with the metadata log at its limit),
    sharing the base's snapshots instead of a deep copy of them; a failed requirement fails
    the same way; a creation is pyiceberg's own; and commits through it land as pyiceberg's
    would."""
    from pyiceberg.catalog import MetastoreCatalog
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.table.update import AssertRefSnapshotId, RemoveSnapshotsUpdate, SetPropertiesUpdate
    from pyiceberg.types import StringType

    catalog = internals.staging_commits_without_a_deep_copy(
        SqlCatalog("t", uri=f"sqlite:///{tmp_path / 'c.db'}", warehouse=tmp_path.as_uri())
    )
    assert isinstance(catalog, MetastoreCatalog)
    catalog.create_namespace("cold")
    schema = pa.schema([pa.field("trade_id", pa.int64(), nullable=False)])
    table = catalog.create_table(
        ("cold", "t"), schema=Schema(NestedField(1, "trade_id", LongType(), required=True)),
        properties={"write.metadata.previous-versions-max": "2"},
    )
    for i in range(3):
        table.append(pa.Table.from_pylist([{"trade_id": i}], schema=schema))
    current = catalog.load_table(("cold", "t"))
    appended = current.transaction()
    appended.append(pa.Table.from_pylist([{"trade_id": 7}], schema=schema))
    evolved = current.transaction()
    evolved.update_schema().add_column("venue", StringType()).commit()
    cases = {
        "append": appended._updates,
        "schema": evolved._updates,
        "property": (SetPropertiesUpdate(updates={"k": "v"}),),
        "expiry": (RemoveSnapshotsUpdate(snapshot_ids=[current.metadata.snapshots[0].snapshot_id]),),
    }
    requirements = (AssertRefSnapshotId(ref="main", snapshot_id=current.metadata.current_snapshot_id),)
    for case, updates in cases.items():
        ours = catalog._update_and_stage_table(current, current.name(), requirements, updates)
        theirs = MetastoreCatalog._update_and_stage_table(catalog, current, current.name(), requirements, updates)
        assert ours.metadata.model_dump(exclude={"last_updated_ms"}) == theirs.metadata.model_dump(exclude={"last_updated_ms"}), case
        assert ours.metadata_location.split("/")[-1][:5] == theirs.metadata_location.split("/")[-1][:5] == "00004", case
        assert ours.metadata.metadata_log[-1].metadata_file == current.metadata_location, case
        assert len(ours.metadata.metadata_log) == 2, case  # at its limit, as pyiceberg keeps it
        kept = next(s for s in ours.metadata.snapshots if s.snapshot_id == current.metadata.current_snapshot_id)
        assert kept is current.metadata.snapshot_by_id(kept.snapshot_id), case  # shared, not copied
    assert current.metadata.properties.get("k") is None and len(current.metadata.snapshots) == 3  # the base as it was
    stale = (AssertRefSnapshotId(ref="main", snapshot_id=current.metadata.snapshots[0].snapshot_id),)
    with pytest.raises(CommitFailedException):
        catalog._update_and_stage_table(current, current.name(), stale, cases["property"])
    # Commits through it: an append, a schema change and a property, then a reload sees them.
    table = catalog.load_table(("cold", "t"))
    table.append(pa.Table.from_pylist([{"trade_id": 9}], schema=schema))
    with table.transaction() as tx:
        tx.set_properties({"k": "v"})
    with table.update_schema() as update:
        update.add_column("venue", StringType())
    reloaded = catalog.load_table(("cold", "t"))
    assert sorted(reloaded.scan().to_arrow()["trade_id"].to_pylist()) == [0, 1, 2, 9]
    assert reloaded.metadata.properties["k"] == "v" and reloaded.schema().find_field("venue")
    assert reloaded.metadata_location == table.metadata_location  # the committing table holds what the catalog does


def test_a_metastore_catalog_parses_each_metadata_file_once_and_still_sees_every_other_writer(tmp_path, monkeypatch):
    """Every load parses the table's whole metadata.json, every kept snapshot: after a month,
    29 parses a tick held 146 snapshots each, enough to bring a full garbage collection into
    most ticks. A catalog made by `commits_and_loads_without_repeated_work` parses a file
    once: a load of the file it last loaded or committed is answered without reading it; a
    file another writer committed (another catalog, another process) is read. Metadata files
    are immutable: the answer is the file's content, equal to a fresh parse. pyiceberg 0.12's
    metastore catalogs read a metadata file through `FromInputFile.table_metadata`."""
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.serializers import FromInputFile

    def sql_catalog():  # type: ignore[no-untyped-def]
        return SqlCatalog("t", uri=f"sqlite:///{tmp_path / 'c.db'}", warehouse=tmp_path.as_uri())

    ours = internals.commits_and_loads_without_repeated_work(sql_catalog())
    other = sql_catalog()  # another writer, as pyiceberg makes it
    other.create_namespace("cold")
    schema = pa.schema([pa.field("trade_id", pa.int64(), nullable=False)])
    other.create_table(("cold", "t"), schema=Schema(NestedField(1, "trade_id", LongType(), required=True)))
    parsed = count_metadata_parses(monkeypatch)
    table = ours.load_table(("cold", "t"))
    again = ours.load_table(("cold", "t"))
    assert len(parsed) == 1 and again.metadata is table.metadata and again is not table
    table.append(pa.Table.from_pylist([{"trade_id": 1}], schema=schema))  # its own check's load, then the commit
    table.refresh()
    assert len(parsed) == 1  # the committed file is the one just written: nothing to read
    fresh = FromInputFile.table_metadata(table.io.new_input(table.metadata_location))
    assert fresh.model_dump() == table.metadata.model_dump()  # what was kept is what the file holds
    parsed.clear()
    # Another writer's commit is read, once, and planned from.
    other.load_table(("cold", "t")).append(pa.Table.from_pylist([{"trade_id": 2}], schema=schema))
    parsed.clear()
    table.refresh()
    table.refresh()
    assert len(parsed) == 1 and len(table.metadata.snapshots) == 2
    assert sorted(table.scan().to_arrow()["trade_id"].to_pylist()) == [1, 2]
    # A commit refused by the catalog's check keeps nothing of what it staged.
    stale = ours.load_table(("cold", "t"))
    other.load_table(("cold", "t")).append(pa.Table.from_pylist([{"trade_id": 3}], schema=schema))
    with pytest.raises(CommitFailedException):
        internals.table_without_commit_retries(stale).append(pa.Table.from_pylist([{"trade_id": 4}], schema=schema))
    assert sorted(ours.load_table(("cold", "t")).scan().to_arrow()["trade_id"].to_pylist()) == [1, 2, 3]
    # Only the catalog it was made for: a table another catalog loads is parsed by that one.
    parsed.clear()
    other.load_table(("cold", "t"))
    other.load_table(("cold", "t"))
    assert len(parsed) == 2
    # Only while a table holds it: the catalog outlives its tables (a SQL catalog is freed by a
    # full collection only) and must not keep their history alive.
    held = ours.load_table(("cold", "t"))
    kept = weakref.ref(held.metadata)
    parsed.clear()
    del table, again, stale, held, fresh
    gc.collect()  # pyiceberg's scan planner holds the metadata in a cycle of its own
    assert kept() is None
    ours.load_table(("cold", "t"))
    assert len(parsed) == 1
