"""Deciding what each range that was read becomes, and committing a checkpoint.

A checkpoint is one snapshot: the cold rows it owns (a delete filter) go and its new files
come in, asserting the snapshot it was planned on, with pyiceberg's own retries off. The
files of a range that does not commit (unchanged, refused) are deleted at once; those of a
commit are deleted only after a definite failure (protocol.py)."""

from collections.abc import Iterable
from dataclasses import dataclass, replace

from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.expressions.visitors import bind
from pyiceberg.io.pyarrow import ArrowScan, expression_to_pyarrow
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from cold_assets.cold.files import DataFileFormat, DataFileWriter
from cold_assets.internals import overwrite_of_live_manifests, table_without_commit_retries
from cold_assets.offload.bookkeeping import snapshot_id
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


class CommitWouldRemoveOtherRows(RuntimeError):
    """The files a commit's delete filter matches hold another number of rows than the decision
    counted on the same snapshot: nothing is committed (a defect, never a race)."""


@dataclass(frozen=True)
class Matched:
    """What a delete filter matches in the table's files: files to drop, files matched in part
    with the files of the rows they keep (already written), and the rows matched in all."""

    dropped: list[DataFile]
    rewritten: list[tuple[DataFile, list[DataFile]]]
    rows: int

    @property
    def new_files(self) -> list[DataFile]:
        return [f for _, kept in self.rewritten for f in kept]


def commit_transaction(
    table: Table,
    data_files: list[DataFile],
    delete_filter: BooleanExpression | None,
    summary: dict[str, str],
    *,
    split_column: str,
    replaced_rows: int,
) -> int | None:
    """One snapshot: the cold rows this checkpoint owns go, its files come in; returns it.

    A file the delete filter matches whole is dropped; a file it matches in part (an append
    layer's overlap re-read, one hour of a day that compaction wrote as one file) is written
    again without the matched rows, in the same snapshot. One snapshot per commit keeps the
    table's history to one snapshot per checkpoint (pyiceberg's delete then append made two or
    three), and every snapshot is a state an offload meant: none holds an hour deleted and not
    yet written back, so time travel and rollback land on whole hours. `replaced_rows` is what
    the decision counted the filter to match; the commit removes exactly that many or none.

    Until the catalog call, every file of the commit (`data_files` and the rewrites) is
    deleted on any failure; after a refusal by the catalog too; when the call's outcome is
    unknown they stay (protocol.py)."""
    table = table_without_commit_retries(table)
    matched = Matched([], [], 0)
    tx = table.transaction()
    try:
        if delete_filter is not None:
            matched = _matched_files(table, delete_filter, split_column)
        if matched.rows != replaced_rows:
            raise CommitWouldRemoveOtherRows(
                f"{'.'.join(table.name())}: the delete would remove {matched.rows} cold rows where the decision "
                f"counted {replaced_rows}, on the same snapshot"
            )
        if matched.dropped or matched.rewritten:
            with overwrite_of_live_manifests(tx, table, summary) as overwrite:
                for data_file in matched.dropped + [original for original, _ in matched.rewritten]:
                    overwrite.delete_data_file(data_file)
                for data_file in matched.new_files + data_files:
                    overwrite.append_data_file(data_file)
        elif data_files:
            with tx.update_snapshot(snapshot_properties=summary).fast_append() as append:
                for data_file in data_files:
                    append.append_data_file(data_file)
        else:
            return snapshot_id(table)  # the filter matched no cold row, and nothing is new
    except BaseException:
        _delete(table, matched.new_files + data_files)  # no catalog call was made: nothing references them
        raise
    try:
        committed = tx.commit_transaction()
    except (CommitFailedException, ValidationException):
        _delete(table, matched.new_files + data_files)  # the catalog refused it
        raise
    return snapshot_id(committed)


def _matched_files(table: Table, delete_filter: BooleanExpression, split_column: str) -> Matched:
    """The files the delete filter matches whole (to drop), and those it matches in part, each
    with the files of the rows it keeps (written here). A file's partition tells when it is
    matched whole (pyiceberg's residual); the others are read and filtered."""
    schema = table.schema()
    matches = expression_to_pyarrow(bind(schema, delete_filter, case_sensitive=True))
    dropped: list[DataFile] = []
    rewritten: list[tuple[DataFile, list[DataFile]]] = []
    rows_matched = 0
    try:
        for task in table.scan(row_filter=delete_filter).plan_files():
            if task.residual == AlwaysTrue() and not task.delete_files:
                dropped.append(task.file)
                rows_matched += task.file.record_count
                continue
            rows = ArrowScan(table.metadata, table.io, schema, AlwaysTrue()).to_table([task])
            # A row is kept unless the filter is true for it (null is not a match), as a scan counts.
            kept = rows.filter(~matches | matches.is_null())
            rows_matched += rows.num_rows - kept.num_rows
            if kept.num_rows == rows.num_rows:
                continue
            if kept.num_rows == 0:
                dropped.append(task.file)
                continue
            writer = DataFileWriter(DataFileFormat(table, kept.schema), split_column, f"rewrite-{table.name()[-1]}")
            try:
                for batch in kept.to_batches():
                    writer.write(batch)
                rewritten.append((task.file, writer.close()))
            except BaseException:
                writer.abort()
                raise
    except BaseException:
        _delete(table, [f for _, kept in rewritten for f in kept])
        raise
    return Matched(dropped, rewritten, rows_matched)


def discard(table: Table, written: Iterable[Written]) -> None:
    """Deletes the data files of ranges no snapshot references."""
    _delete(table, (data_file for w in written for data_file in w.data_files))


def _delete(table: Table, data_files: Iterable[DataFile]) -> None:
    for data_file in data_files:
        try:
            table.io.delete(data_file.file_path)
        except FileNotFoundError:
            pass
