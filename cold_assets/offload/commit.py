"""Deciding what each range that was read becomes, and committing a checkpoint.

A checkpoint is one transaction: a delete filtered on what it owns (where cold holds any of
it), then the new files, asserting the snapshot it was planned on, with pyiceberg's own
retries off. The files of a range that does not commit (unchanged, refused) are deleted at
once; those of a commit are deleted only after a definite failure (protocol.py)."""

import warnings
from collections.abc import Iterable
from dataclasses import replace

from pyiceberg.expressions import BooleanExpression
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from cold_assets.internals import table_without_commit_retries
from cold_assets.offload.bookkeeping import RUN_ID
from cold_assets.offload.phases import ColdRowsWouldBeLost, Decided, Outcome, Written
from cold_assets.tables import MirroredTable, OffloadMode
from cold_assets.warm.read import EPOCH


def cold_rows(table: Table, row_filter: BooleanExpression) -> int:
    """Cold rows matching a filter (record counts of whole files, a read of the others)."""
    if table.current_snapshot() is None:
        return 0
    return table.scan(row_filter=row_filter).count()


def decide(spec: MirroredTable, written: Written, replaced: int, allow_fewer_rows: bool) -> Decided | ColdRowsWouldBeLost:
    """What a range that was read becomes: refused, unchanged, or part of the commit.
    `replaced` is the number of cold rows its delete filter matches."""
    read, warm = written.planned.read, written.warm
    # An append compares the cold rows it replaces with the warm rows of the overlap re-read
    # (not newer than the watermark), so that new rows cannot mask rows warm lost. With no
    # watermark known (EPOCH: cold rows without bookkeeping or statistics), every row read is
    # the re-read.
    overlap_only = read.newer_than is not None and read.newer_than > EPOCH
    kept_by_read = warm.rows - warm.newer_rows if overlap_only else warm.rows
    if kept_by_read < replaced and not allow_fewer_rows:
        return ColdRowsWouldBeLost(
            spec, list(written.planned.span.keys), kept_by_read, replaced,
            "ingested in the overlap re-read" if overlap_only else "in the whole range",
        )
    appending = read.newer_than is not None
    new_state = read.new_state
    if spec.mode is OffloadMode.REPLACE:
        new_state = replace(new_state, fingerprint=warm.fingerprint)
    if (appending and warm.newer_rows == 0 and kept_by_read == replaced) or (warm.rows == 0 and replaced == 0):
        # Nothing new: no commit. The hour's result (its checks, Dagster's record) says it is
        # in cold up to the new watermark, which is true now; the table keeps its last commit's,
        # and the next run reads again from there (minus the overlap), which is harmless.
        return Decided(written, Outcome.UNCHANGED, new_state, replaced)
    return Decided(written, Outcome.APPEND if appending else Outcome.REPLACE, new_state, replaced)


def commit_transaction(
    table: Table, data_files: list[DataFile], delete_filter: BooleanExpression | None, summary: dict[str, str]
) -> int | None:
    """One transaction: delete what this checkpoint owns, add its files; returns the new snapshot.

    The bookkeeping goes on the transaction's last snapshot only: a table rolled back to the
    delete in between holds none of the rows, so it must not claim their watermark."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Delete operation did not match any records")
        tx = table_without_commit_retries(table).transaction()
        if delete_filter is not None:
            # The run id alone marks the delete as this transaction's (ranges_changed_since).
            tx.delete(delete_filter, snapshot_properties={RUN_ID: summary[RUN_ID]} if data_files else summary)
        if data_files:
            with tx.update_snapshot(snapshot_properties=summary).fast_append() as append:
                for data_file in data_files:
                    append.append_data_file(data_file)
        committed = tx.commit_transaction()
    snapshot = committed.current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def discard(table: Table, written: Iterable[Written]) -> None:
    """Deletes the data files of ranges no snapshot references."""
    for w in written:
        for data_file in w.data_files:
            try:
                table.io.delete(data_file.file_path)
            except FileNotFoundError:
                pass
