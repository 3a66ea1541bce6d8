"""The manifests written since the nightly's last rewrite: the day's, which the offload's
commits merge among themselves (internals.py) and whose number decides whether the nightly
rewrites them again (maintenance/operations.py)."""

from pyiceberg.manifest import ManifestContent, ManifestFile
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Operation, ancestors_of


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
