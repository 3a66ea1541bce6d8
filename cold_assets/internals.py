"""Every private API of a dependency that cold-assets uses, in this one module.

None of these has a public equivalent in the versions pinned (dagster 1.13, pyiceberg 0.12):
- Dagster's asset-check execution records and the event-log storage that serves them (the
  sensors follow the checks' history), its backfill filter (the self-healing sensor leaves
  hours a queued backfill covers), the type `define_asset_job` returns, and the sensors'
  stored states and ticks (the metrics exporter reads the alert counts kept in their
  cursors, and when each last ticked);
- pyiceberg's schema check of an Arrow file before it is added, and its mapping of the
  table's write.parquet.* properties to pyarrow's writer options (cold/files.py writes the
  data files itself, one per partition value, and adds them); and a `Table` built by hand
  around its metadata, the one way to turn its commit retries off for one transaction; its
  overwrite producer, to leave out of a new snapshot the manifests that hold no live file; its
  append and overwrite producers and manifest merge manager, to merge the day's manifests
  only (not the nightly's clustered ones); the state of a `Transaction` (`_table`,
  `_updates`) and the update functions its metadata is computed with, to compute it once per
  state and without a deep copy of the table's history, and a metastore catalog's staging of
  a commit (`_update_and_stage_table`), to stage it without that copy too, and the reading of
  a metadata file that every metastore catalog's load goes through
  (`FromInputFile.table_metadata`, answered from what the catalog last read or committed
  while one of its loads runs); and its inclusive and strict metrics evaluators, which tell
  from a data file's statistics whether a delete filter may match any of its rows or must
  match all of them.

(Spark's maintenance reaches the JVM through pyspark's py4j handles, `_jvm` and
`_jsparkSession`: that is pyspark's own way to call a Java API it does not wrap, used in
maintenance/operations.py and class_data.py.)

`cold_assets_tests/unit/test_internals.py` holds each to the names, fields and parameters
used here, so that a new version that changes one fails there, by name, not in production.
"""

import contextlib
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

from dagster import DagsterInstance
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
from dagster._core.scheduler.instigation import InstigatorType, SensorInstigatorData, TickStatus
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)
from dagster._core.storage.event_log.base import EventLogStorage
from pyiceberg.catalog import Catalog, MetastoreCatalog
from pyiceberg.expressions import BooleanExpression
from pyiceberg.expressions.visitors import _InclusiveMetricsEvaluator, _StrictMetricsEvaluator
from pyiceberg.io import InputFile
from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible as check_pyarrow_schema_compatible
from pyiceberg.io.pyarrow import _get_parquet_writer_kwargs as parquet_writer_kwargs
from pyiceberg.manifest import DataFile, ManifestFile
from pyiceberg.schema import Schema
from pyiceberg.serializers import FromInputFile
from pyiceberg.table import CommitTableResponse, StagedTable, Table, TableProperties, Transaction
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Operation
from pyiceberg.table.update import (
    TableRequirement,
    TableUpdate,
    _apply_table_update,
    _TableMetadataUpdateContext,
    _update_table_metadata_log,
)
from pyiceberg.table.update.snapshot import _FastAppendFiles, _ManifestMergeManager, _OverwriteFiles, _SnapshotProducer
from pyiceberg.typedef import UTF8, Identifier
from pyiceberg.utils.datetime import datetime_to_millis
from pyiceberg.utils.properties import property_as_bool, property_as_int

from cold_assets.cold.manifests import last_rewrite_sequence_number, written_since


@dataclass(frozen=True)
class FileStatisticsTest:
    """What a data file's column statistics tell of `expression`, bound once for many files:
    pyiceberg's inclusive and strict metrics evaluators (its own delete asks them too, beside
    its partition projections). A file without the statistics may match, and need not."""

    may_match: Callable[[DataFile], bool]  # False: no row of the file can match
    must_match: Callable[[DataFile], bool]  # True: every row of the file matches


def file_statistics_test(schema: Schema, expression: BooleanExpression) -> FileStatisticsTest:
    return FileStatisticsTest(
        _InclusiveMetricsEvaluator(schema, expression, case_sensitive=True).eval,
        _StrictMetricsEvaluator(schema, expression, case_sensitive=True).eval,
    )


def table_without_commit_retries(table: Table) -> Table:
    """The table with pyiceberg's own commit retries off, for one transaction. On a conflict
    pyiceberg would rebase the commit onto the concurrent one, and an append validates
    nothing: it would add a second copy of rows the other writer committed. A conflict fails
    the commit instead, and the checkpoint starts over from reconciliation (offload/commit.py).
    The table's stored property is untouched: Spark's compaction keeps its retries."""
    properties = {**table.metadata.properties, TableProperties.COMMIT_NUM_RETRIES: "0"}
    metadata = table.metadata.model_copy(update={"properties": properties})
    return Table(table.name(), metadata, table.metadata_location, table.io, table.catalog)


def staged_metadata(base: TableMetadata, updates: tuple[TableUpdate, ...], metadata_location: str | None = None) -> TableMetadata:
    """What pyiceberg 0.12's `update_table_metadata(base, updates, metadata_location=...)`
    computes (a `Transaction.table_metadata`, a catalog's staging of a commit), less its closing
    deep copy of the whole result: every snapshot, snapshot-log and metadata-log entry the
    table keeps (2.9 ms a commit at 130 snapshots, measured alone). The result shares what the
    updates left unchanged with `base`. Neither is changed in place: pyiceberg changes metadata
    by copying it (`model_copy(update=...)`), and staged metadata is only read and written out
    (a committed one becomes the committing table's metadata, read the same way).
    `metadata_location`, `base`'s own file, goes into the new metadata log (a commit's)."""
    context = _TableMetadataUpdateContext()
    metadata = base
    for update in updates:
        metadata = _apply_table_update(update, metadata, context)
    if context.has_changes() and metadata_location:
        metadata = _update_table_metadata_log(metadata, metadata_location, base.last_updated_ms)
    if context.has_changes() and metadata.last_updated_ms == base.last_updated_ms:
        metadata = metadata.model_copy(update={"last_updated_ms": datetime_to_millis(datetime.now().astimezone())})
    metadata.spec().check_compatible(metadata.schema())
    metadata.sort_order().check_compatible(metadata.schema())
    return metadata


def staging_commits_without_a_deep_copy(catalog: Catalog) -> Catalog:
    """`catalog`, whose commits stage the new metadata with `staged_metadata`. A metastore
    catalog (SQL, Glue, Hive: it writes the metadata file itself; a REST catalog's server does,
    and is returned as it is) stages each commit in `_update_and_stage_table` with
    `update_table_metadata`, which ends in a deep copy of the whole result, every snapshot the
    table keeps: 3.4 ms a commit at 147 snapshots, nine commits a tick, and as many objects
    for the garbage collector. Sharing is safe because table metadata is never changed in
    place: pyiceberg's updates copy what they change (`model_copy(update=...)`), and the
    committed metadata, which becomes the committing table's, is only read and written out.
    A table's creation (no current table) keeps pyiceberg's own staging, which validates the
    new metadata whole; a catalog class with a staging of its own is left as it is."""
    if not isinstance(catalog, MetastoreCatalog):
        return catalog
    if type(catalog)._update_and_stage_table is not MetastoreCatalog._update_and_stage_table:
        return catalog
    stage_created = catalog._update_and_stage_table

    def stage(
        current_table: Table | None,
        table_identifier: tuple[str, ...],
        requirements: tuple[TableRequirement, ...],
        updates: tuple[TableUpdate, ...],
    ) -> StagedTable:
        if current_table is None:
            return stage_created(current_table, table_identifier, requirements, updates)
        for requirement in requirements:
            requirement.validate(current_table.metadata)
        metadata = staged_metadata(current_table.metadata, updates, current_table.metadata_location)
        version = catalog._parse_metadata_version(current_table.metadata_location) + 1
        location = load_location_provider(metadata.location, metadata.properties).new_table_metadata_file_location(version)
        io = catalog._load_file_io(properties=metadata.properties, location=location)
        return StagedTable(identifier=table_identifier, metadata=metadata, metadata_location=location, io=io, catalog=catalog)

    catalog._update_and_stage_table = stage  # type: ignore[method-assign]
    return catalog


class _MetadataFiles:
    """Per table, the metadata file one catalog last read or committed, and its metadata while
    something else still holds it. A weak reference: a SQL catalog is freed only by a cyclic
    garbage collection (SQLAlchemy's engine), and must not keep a table's whole history alive
    that long once its tables are gone. One entry per table, replaced, never removed: nothing
    here can fail once a commit landed."""

    def __init__(self) -> None:
        self._by_table: dict[Identifier, tuple[str, weakref.ref[TableMetadata]]] = {}

    def keep(self, table: Identifier, location: str, metadata: TableMetadata) -> None:
        self._by_table[table] = (location, weakref.ref(metadata))

    def read(self, table: Identifier, input_file: InputFile, encoding: str) -> TableMetadata:
        location, held = self._by_table.get(table, ("", None))
        metadata = held() if held is not None and location == input_file.location else None
        if metadata is None:
            metadata = _parse_metadata_file(input_file, encoding)
            self.keep(table, input_file.location, metadata)
        return metadata


_parse_metadata_file = FromInputFile.table_metadata  # pyiceberg's own reading of a metadata file
# Set while a catalog of `parsing_each_metadata_file_once` loads a table: its files, the table.
_LOADING: ContextVar[tuple[_MetadataFiles, Identifier] | None] = ContextVar("cold_assets_loading", default=None)


def _table_metadata(input_file: InputFile, encoding: str = UTF8) -> TableMetadata:
    """`FromInputFile.table_metadata`, which a metastore catalog's load reads a table's
    metadata file with; pyiceberg's own outside such a load."""
    loading = _LOADING.get()
    if loading is None:
        return _parse_metadata_file(input_file, encoding)
    files, table = loading
    return files.read(table, input_file, encoding)


def parsing_each_metadata_file_once(catalog: Catalog) -> Catalog:
    """`catalog`, which parses a table's metadata file once. A metastore catalog's every load
    parses the whole metadata.json, every snapshot the table keeps, and a tick loads each
    table three times or more (the asset's load, a SQL catalog's own check at commit, the
    refresh after it): after bench steady's month, 29 parses a tick of 146 snapshots each,
    about half of the objects promoted between two full garbage collections. This catalog
    answers a load of the file it last read or committed for a table with that file's
    metadata, as long as a table still holds it; a file anyone else committed is read.
    Metadata files are never rewritten (a commit writes a new one, named by a UUID), shared
    metadata is never changed in place (see `staged_metadata`), and a committed one is what
    the commit wrote, as pyiceberg's own table holds it after a commit. A REST catalog, whose
    server sends the metadata, is returned as it is."""
    if not isinstance(catalog, MetastoreCatalog):
        return catalog
    files = _MetadataFiles()
    if FromInputFile.table_metadata is not _table_metadata:
        FromInputFile.table_metadata = staticmethod(_table_metadata)  # type: ignore[method-assign]

    def load_table(identifier: str | Identifier) -> Table:
        loading = _LOADING.set((files, Catalog.identifier_to_tuple(identifier)))
        try:  # the class's method as it is now (a test may count its calls)
            return type(catalog).load_table(catalog, identifier)
        finally:
            _LOADING.reset(loading)

    def commit_table(table: Table, requirements: tuple[TableRequirement, ...], updates: tuple[TableUpdate, ...]) -> CommitTableResponse:
        committed = type(catalog).commit_table(catalog, table, requirements, updates)
        files.keep(table.name(), committed.metadata_location, committed.metadata)
        return committed

    catalog.load_table = load_table  # type: ignore[method-assign]
    catalog.commit_table = commit_table  # type: ignore[method-assign]
    return catalog


def commits_and_loads_without_repeated_work(catalog: Catalog) -> Catalog:
    """The catalog cold-assets commits through (IcebergResource.catalog): staging without a
    deep copy, and each metadata file parsed once."""
    return parsing_each_metadata_file_once(staging_commits_without_a_deep_copy(catalog))


class _TransactionComputingMetadataOnce(Transaction):
    """pyiceberg 0.12's `Transaction.table_metadata` replays the staged updates onto the table's
    metadata and deep-copies the result at every read, and its snapshot producer reads it about
    17 times per commit: a commit cost that many copies of every snapshot the table keeps
    (bench steady: 7 ms per read at 63 snapshots; a week of ticks keeps 672). Upstream:
    apache/iceberg-python#2673 and #3784, not in a release. Here it is computed once per state
    (`staged_metadata`, without the copy): `_updates` is a tuple rebound by every staged update
    and the table's metadata is rebound by every refresh, so the cache holds both and answers
    only while both are the same objects. Like upstream's cache, it hands the same object to
    every reader."""

    _computed: tuple[TableMetadata, tuple, TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        computed = self._computed
        if computed is not None and computed[0] is self._table.metadata and computed[1] is self._updates:
            return computed[2]
        metadata = staged_metadata(self._table.metadata, self._updates)
        self._computed = (self._table.metadata, self._updates, metadata)
        return metadata


def transaction(table: Table) -> Transaction:
    """`table.transaction()`, whose metadata is computed once per staged state, not per read."""
    return _TransactionComputingMetadataOnce(table)


def _merge_the_days_manifests(producer: _SnapshotProducer, manifests: list[ManifestFile]) -> list[ManifestFile]:
    """The manifests of a new snapshot, the day's (written since the nightly's rewrite) merged
    as pyiceberg's merge-append merges an append's (commit.manifest-merge.enabled, up to
    commit.manifest.target-size-bytes, as Iceberg's Java writers do). pyiceberg 0.12's
    overwrite never merges, and its merge-append merges every manifest: each 15-minute commit
    left one more manifest to every later commit and plan of the day, or merged the rewrite's
    manifests, each a range of partitions, with today's, into ones spanning both."""
    metadata = producer._transaction.table_metadata
    properties = metadata.properties
    rewritten_at = last_rewrite_sequence_number(metadata)
    days = [m for m in manifests if written_since(m, rewritten_at)]
    merged = _ManifestMergeManager(
        target_size_bytes=property_as_int(  # type: ignore[arg-type]
            properties, TableProperties.MANIFEST_TARGET_SIZE_BYTES, TableProperties.MANIFEST_TARGET_SIZE_BYTES_DEFAULT
        ),
        min_count_to_merge=property_as_int(  # type: ignore[arg-type]
            properties, TableProperties.MANIFEST_MIN_MERGE_COUNT, TableProperties.MANIFEST_MIN_MERGE_COUNT_DEFAULT
        ),
        merge_enabled=property_as_bool(properties, TableProperties.MANIFEST_MERGE_ENABLED, TableProperties.MANIFEST_MERGE_ENABLED_DEFAULT),
        snapshot_producer=producer,
    ).merge_manifests(days)
    # What this commit wrote and merged away is referenced by nothing: gone now, not left for
    # remove_orphan_files (where it would read as a crashed writer's).
    kept, inputs = {m.manifest_path for m in merged}, {m.manifest_path for m in days}
    for path in [p for p in producer._written_manifests if p not in kept and p in inputs]:
        producer._written_manifests.remove(path)
        with contextlib.suppress(Exception):  # one left behind is remove_orphan_files' to take
            producer._io.delete(path)
    return merged + [m for m in manifests if not written_since(m, rewritten_at)]


class _AppendMergingTheDaysManifests(_FastAppendFiles):
    def _process_manifests(self, manifests: list[ManifestFile]) -> list[ManifestFile]:
        return _merge_the_days_manifests(self, manifests)


class _OverwriteOfLiveManifests(_OverwriteFiles):
    def _existing_manifests(self) -> list[ManifestFile]:
        # A manifest carried from an earlier snapshot that holds only deleted entries describes
        # that snapshot's change, not the table: Iceberg's Java writer leaves such manifests out
        # (ManifestFilterManager), pyiceberg 0.12 carries them into every later snapshot.
        return [m for m in super()._existing_manifests() if m.has_added_files() or m.has_existing_files()]

    def _process_manifests(self, manifests: list[ManifestFile]) -> list[ManifestFile]:
        return _merge_the_days_manifests(self, manifests)


def append_merging_the_days_manifests(tx: Transaction, table: Table, snapshot_properties: dict[str, str]) -> _FastAppendFiles:
    """pyiceberg's append producer (`tx.update_snapshot().fast_append()`), whose snapshot merges
    the day's manifests (_merge_the_days_manifests)."""
    return _AppendMergingTheDaysManifests(
        operation=Operation.APPEND, transaction=tx, io=table.io, snapshot_properties=snapshot_properties
    )


def overwrite_of_live_manifests(tx: Transaction, table: Table, snapshot_properties: dict[str, str]) -> _OverwriteFiles:
    """pyiceberg's overwrite producer (`tx.update_snapshot().overwrite()` on a table that has a
    snapshot), whose snapshot lists only manifests with live files and its own deletes: each
    tick's delete manifest would otherwise stay in every later snapshot until the nightly
    rewrite of the manifests, and every commit and scan plan of the day would go through them."""
    return _OverwriteOfLiveManifests(
        operation=Operation.OVERWRITE, transaction=tx, io=table.io, snapshot_properties=snapshot_properties
    )


__all__ = [
    "COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES",
    "AssetCheckExecutionRecord",
    "AssetCheckExecutionRecordStatus",
    "BulkActionStatus",
    "BulkActionsFilter",
    "EventLogStorage",
    "UnresolvedAssetJobDefinition",
    "append_merging_the_days_manifests",
    "check_pyarrow_schema_compatible",
    "commits_and_loads_without_repeated_work",
    "overwrite_of_live_manifests",
    "parquet_writer_kwargs",
    "parsing_each_metadata_file_once",
    "staging_commits_without_a_deep_copy",
    "table_without_commit_retries",
    "transaction",
]


@dataclass(frozen=True)
class SensorState:
    cursor: str | None
    last_tick_at: float | None  # Unix seconds of its newest tick that completed (None: none yet)
    last_tick_failed: bool


def sensor_states(instance: DagsterInstance, names: tuple[str, ...]) -> dict[str, SensorState]:
    """The stored cursor and newest completed tick of each sensor of `names` that has state on
    the instance (any code location), by sensor name."""
    found: dict[str, tuple[tuple[bool, float], SensorState]] = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        data = state.instigator_data
        if state.name not in names:
            continue
        ticks = instance.get_ticks(
            state.instigator_origin_id, state.selector_id, limit=1, statuses=[TickStatus.SUCCESS, TickStatus.SKIPPED, TickStatus.FAILURE]
        )
        sensor = SensorState(
            cursor=data.cursor if isinstance(data, SensorInstigatorData) else None,
            last_tick_at=ticks[0].timestamp if ticks else None,
            last_tick_failed=bool(ticks) and ticks[0].status == TickStatus.FAILURE,
        )
        # A name held by several code locations' states (an old or renamed one): the running
        # one, then the one that ticked last.
        rank = (state.is_running, sensor.last_tick_at or 0.0)
        if state.name not in found or rank > found[state.name][0]:
            found[state.name] = (rank, sensor)
    return {name: sensor for name, (_, sensor) in found.items()}
