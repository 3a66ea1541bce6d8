"""The cold tables' manifests: the live data files they list, read from their entries
without pyiceberg's scan planning; and the manifests written since the nightly's last
rewrite, the day's, which the offload's commits merge among themselves (internals.py) and
whose number decides whether the nightly rewrites them again (maintenance/operations.py)."""

from collections.abc import Iterable

from pyiceberg.manifest import DataFile, ManifestContent, ManifestFile
from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Operation, ancestors_of


def live_data_files(table: Table, manifests: Iterable[ManifestFile] | None = None) -> list[DataFile]:
    """The live data files (added or existing entries) that `manifests` list; by default every
    data manifest of the current snapshot."""
    if manifests is None:
        snapshot = table.current_snapshot()
        if snapshot is None:
            return []
        manifests = [m for m in snapshot.manifests(table.io) if m.content == ManifestContent.DATA]
    return [entry.data_file for manifest in manifests for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)]


def last_rewrite_sequence_number(metadata: TableMetadata) -> int:
    """The sequence number of the newest rewrite (Iceberg's "replace": rewrite_manifests or
    rewrite_data_files) on the current ancestry; 0 when there is none. A manifest written at
    it or before holds the rewrite's clustered partition ranges."""
    for snapshot in ancestors_of(metadata.current_snapshot(), metadata):
        if snapshot.summary is not None and snapshot.summary.operation == Operation.REPLACE:
            return snapshot.sequence_number or 0
    return 0


def written_since(manifest: ManifestFile, sequence_number: int) -> bool:
    """A data manifest written after `sequence_number`, or by the commit being made (whose
    sequence number is not assigned yet)."""
    if manifest.content != ManifestContent.DATA:
        return False
    return manifest.sequence_number is None or manifest.sequence_number < 0 or manifest.sequence_number > sequence_number
