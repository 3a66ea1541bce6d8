"""A metadata file written for one read of a cold table by ClickHouse: the table's metadata
with only the snapshots the read needs.

ClickHouse's Iceberg reader parses the whole metadata.json on every query, and that file holds
every snapshot the expiry keeps (a day of 15-minute commits, then one a day: 100 to 200
snapshots, 150-330 KB). A query's cost then grows with the table's kept history, not with
what it reads. Parity, the audit and the maintenance's proofs read one snapshot (or two, the
current one and an earlier one they name), so ClickHouse is given a metadata file holding
those alone, written next to the table's own (`metadata/cold-assets-reads/`) and deleted after
the read. One left by a crash is an orphan for the nightly's `remove_orphan_files`.

The federated views still read the catalog's own metadata file: a view outlives any one read.
"""

import logging
import uuid
from collections.abc import Iterator, Set
from contextlib import contextmanager

from pyiceberg.serializers import ToOutputFile
from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata

log = logging.getLogger(__name__)

READS_FOLDER = "metadata/cold-assets-reads"  # relative to the table's location


def trimmed_to(metadata: TableMetadata, snapshot_ids: Set[int]) -> TableMetadata:
    """`metadata` with only the snapshots `snapshot_ids` names (and the refs, log entries and
    statistics of those): the same table as read at any of them."""
    return metadata.model_copy(
        update={
            "snapshots": [s for s in metadata.snapshots if s.snapshot_id in snapshot_ids],
            "snapshot_log": [e for e in metadata.snapshot_log if e.snapshot_id in snapshot_ids],
            "metadata_log": [],
            "refs": {name: ref for name, ref in metadata.refs.items() if ref.snapshot_id in snapshot_ids},
            "statistics": [s for s in metadata.statistics if s.snapshot_id in snapshot_ids],
            "partition_statistics": [s for s in metadata.partition_statistics if s.snapshot_id in snapshot_ids],
        }
    )


def new_read_path() -> str:
    """A metadata file name of its own for one read, relative to the table's location, in the
    form ClickHouse's `iceberg_metadata_file_path` accepts (`N-<uuid>.metadata.json`)."""
    return f"{READS_FOLDER}/00000-{uuid.uuid4()}.metadata.json"


@contextmanager
def metadata_for_read(table: Table, relative_path: str, snapshot_id: int | None = None) -> Iterator[bool]:
    """Writes, at `relative_path` under the table's location, the metadata of the current
    snapshot (and `snapshot_id`, when the read names an earlier one), for the duration of the
    read. Yields whether it was written: where it could not be (storage refusing the write),
    the read goes to the catalog's own file, the same table, only slower to parse; logged."""
    current = table.metadata.current_snapshot_id
    kept = {i for i in (current, snapshot_id) if i is not None}
    if snapshot_id is not None and table.metadata.snapshot_by_id(snapshot_id) is None:
        raise ValueError(f"snapshot {snapshot_id} is not in the metadata of {'.'.join(table.name())}")
    location = f"{table.location().rstrip('/')}/{relative_path}"
    try:
        yield _written(trimmed_to(table.metadata, kept), table, location)
    finally:  # also after a write that failed part way
        _delete(table, location)


def _written(metadata: TableMetadata, table: Table, location: str) -> bool:
    try:
        # overwrite: the name is a fresh uuid, and S3 is spared an existence check
        ToOutputFile.table_metadata(metadata, table.io.new_output(location), overwrite=True)
    except OSError as error:
        log.warning("could not write %s; this read parses the catalog's metadata file instead: %s", location, error)
        return False
    return True


def _delete(table: Table, location: str) -> None:
    try:
        table.io.delete(location)
    except FileNotFoundError:
        pass  # never written
    except Exception as error:  # the read's result stands; the file is an orphan for the nightly
        log.warning("could not delete %s (left for remove_orphan_files): %s", location, error)
