"""Deciding what each range that was read becomes, and committing a checkpoint.

A checkpoint is one snapshot: the cold rows it owns (a delete filter) go and its new files
come in, asserting the snapshot it was planned on, with pyiceberg's own retries off. The
files of a range that does not commit (unchanged, refused) are deleted at once; those of a
commit are deleted only after a definite failure (protocol.py)."""

from collections.abc import Iterable
from dataclasses import replace

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.expressions.visitors import bind, extract_field_ids
from pyiceberg.io.pyarrow import ArrowScan, expression_to_pyarrow
from pyiceberg.manifest import DataFile
from pyiceberg.table import FileScanTask, Table

from cold_assets.cold.files import DataFileFormat, DataFileWriter
from cold_assets.internals import (
    append_merging_the_days_manifests,
    file_statistics_test,
    overwrite_of_live_manifests,
    table_without_commit_retries,
    transaction,
)
from cold_assets.offload.bookkeeping import snapshot_id
from cold_assets.offload.phases import ColdMatch, ColdRowsWouldBeLost, Decided, Outcome, Written
from cold_assets.offload.reprocessed import MarkChanges
from cold_assets.tables import MirroredTable, OffloadMode
from cold_assets.warm.read import EPOCH


def decide(spec: MirroredTable, written: Written, matched: ColdMatch, allow_fewer_rows: bool) -> Decided | ColdRowsWouldBeLost:
    """What a range that was read becomes: refused, unchanged, or part of the commit.
    `matched` holds the cold rows its delete filter matches."""
    read, warm = written.planned.read, written.warm
    replaced = matched.rows
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
        return Decided(written, Outcome.UNCHANGED, new_state, matched)
    return Decided(written, Outcome.APPEND if appending else Outcome.REPLACE, new_state, matched)


class CommitWouldRemoveOtherRows(RuntimeError):
    """The ranges of one commit match the same cold rows: their delete filters overlap, and the
    commit would remove fewer rows than their decisions counted. Nothing is committed (a
    defect, never a race)."""


class ColdMatcher:
    """Matches delete filters against one snapshot of a table. The files of the checkpoint's
    `span` (a filter every delete filter implies) are planned once, not once per range. A file
    matched in part is read once and kept for the checkpoint: the decision counts the rows a
    range replaces from it, and the commit writes the file again from the same rows, without
    planning or reading twice. Only those files are kept: one a filter matches whole or not at
    all needs no rewrite."""

    def __init__(self, table: Table, span: BooleanExpression):
        self.table = table
        self.snapshot_id = snapshot_id(table)
        self._schema = table.schema()
        self._span = span
        self._tasks: list[FileScanTask] | None = None  # the span's files, planned on the first match
        self._kept: dict[str, pa.Table] = {}  # file path -> its rows and their positions

    def match(self, delete_filter: BooleanExpression) -> ColdMatch:
        if self.table.current_snapshot() is None:
            return ColdMatch()
        bound = bind(self._schema, delete_filter, case_sensitive=True)
        matches = expression_to_pyarrow(bound)
        filtered = [self._schema.find_column_name(i) for i in sorted(extract_field_ids(bound))]
        whole: list[tuple[DataFile, int]] = []
        partial: list[tuple[DataFile, pa.Array]] = []
        if self._tasks is None:
            self._tasks = list(self.table.scan(row_filter=self._span).plan_files())
        statistics = file_statistics_test(self._schema, delete_filter)
        for task in self._tasks:
            if not statistics.may_match(task.file):
                continue
            # A file's statistics can tell it is matched whole: its record count is the match,
            # and it is not read. (A file they cannot rule out is read for each range that
            # asks: the time columns are required timestamps, whose bounds every writer keeps.)
            if not task.delete_files and statistics.must_match(task.file):
                whole.append((task.file, task.file.record_count))
                continue
            rows = self._rows(task)
            # A row matches where the filter is true (null is not a match), as a scan counts.
            positions = rows.select([*filtered, _POSITION]).filter(matches)[_POSITION].combine_chunks()
            if len(positions) == rows.num_rows:
                whole.append((task.file, rows.num_rows))  # (its delete files applied: not its record count)
            elif len(positions):
                partial.append((task.file, positions))
                self._kept[task.file.file_path] = rows
        return ColdMatch(tuple(whole), tuple(partial))

    def _rows(self, task: FileScanTask) -> pa.Table:
        """A file's rows (its delete files applied), with their positions."""
        kept = self._kept.get(task.file.file_path)
        if kept is not None:
            return kept
        rows = ArrowScan(self.table.metadata, self.table.io, self._schema, AlwaysTrue()).to_table([task])
        return rows.append_column(_POSITION, pa.array(range(rows.num_rows), pa.int64()))

    def rows_kept(self, data_file: DataFile, removed: pa.Array) -> pa.Table:
        """The rows of a file matched in part that none of `removed` (positions) is."""
        rows = self._kept[data_file.file_path]
        return rows.filter(pc.invert(pc.is_in(rows[_POSITION], value_set=removed))).drop_columns([_POSITION])


_POSITION = "_cold_assets_position"


def commit_transaction(
    matcher: ColdMatcher,
    data_files: list[DataFile],
    matches: list[ColdMatch],
    summary: dict[str, str],
    *,
    split_column: str,
    properties: MarkChanges | None = None,
) -> int | None:
    """One snapshot: the cold rows this checkpoint's ranges matched go, its files come in;
    returns it. It is made on the snapshot the ranges were matched on (the matcher's).

    A file matched whole is dropped; a file matched in part (an append layer's overlap
    re-read, one hour of a day that compaction wrote as one file) is written again without
    the matched rows, in the same snapshot. One snapshot per commit keeps the table's history
    to one snapshot per checkpoint (pyiceberg's delete then append made two or three), and
    every snapshot is a state an offload meant: none holds an hour deleted and not yet written
    back, so time travel and rollback land on whole hours. The commit removes exactly the rows
    the decisions counted, or nothing.

    Until the catalog call, every file of the commit (`data_files` and the rewrites) is
    deleted on any failure; after a refusal by the catalog too; when the call's outcome is
    unknown they stay (protocol.py). `properties`: the table properties the same commit sets and
    removes (the reprocessed marks: offload/reprocessed.py)."""
    table = matcher.table
    rewritten: list[tuple[DataFile, list[DataFile]]] = []
    try:
        if snapshot_id(table) != matcher.snapshot_id:
            raise RuntimeError(
                f"{'.'.join(table.name())}: the table moved from snapshot {matcher.snapshot_id}, which the ranges were "
                f"matched on, to {snapshot_id(table)} before their commit"
            )
        table = table_without_commit_retries(table)
        tx = transaction(table)
        dropped, partial = _combined(matches)
        removed = sum(rows for _, rows in dropped) + sum(len(positions) for _, positions in partial)
        if removed != sum(m.rows for m in matches):
            raise CommitWouldRemoveOtherRows(
                f"{'.'.join(table.name())}: the commit's ranges match {sum(m.rows for m in matches)} cold rows "
                f"between them but {removed} distinct ones: their delete filters overlap"
            )
        for data_file, positions in partial:
            kept = matcher.rows_kept(data_file, positions)
            if kept.num_rows == 0:
                dropped.append((data_file, len(positions)))
            else:
                rewritten.append((data_file, _write(table, kept, split_column)))
        new_files = [f for _, kept_files in rewritten for f in kept_files]
        if dropped or rewritten:
            with overwrite_of_live_manifests(tx, table, summary) as overwrite:
                for data_file in [f for f, _ in dropped] + [original for original, _ in rewritten]:
                    overwrite.delete_data_file(data_file)
                for data_file in new_files + data_files:
                    overwrite.append_data_file(data_file)
        elif data_files:
            with append_merging_the_days_manifests(tx, table, summary) as append:
                for data_file in data_files:
                    append.append_data_file(data_file)
        else:
            return snapshot_id(table)  # the filters matched no cold row, and nothing is new
        if properties and properties.set:
            tx.set_properties(properties.set)
        if properties and properties.removed:
            tx.remove_properties(*properties.removed)
    except BaseException:
        # No catalog call was made: nothing references them.
        _delete(table, [f for _, kept_files in rewritten for f in kept_files] + data_files)
        raise
    try:
        committed = tx.commit_transaction()
    except (CommitFailedException, ValidationException):
        _delete(table, new_files + data_files)  # the catalog refused it
        raise
    except KeyError as error:
        # The catalog, applying the commit on its current metadata, found a table property it
        # removes already gone (a reprocessed mark another writer removed: offload/reprocessed.py)
        # and wrote nothing: a conflict, redone from reconciliation.
        _delete(table, new_files + data_files)
        raise CommitFailedException(f"{'.'.join(table.name())}: table property {error} was removed by another writer") from error
    # The planned table is now the committed one, as pyiceberg's own commits leave theirs (the
    # transaction ran on a copy, for its retry setting): a caller's next offload of it plans
    # from what the catalog holds without loading it again.
    matcher.table.metadata, matcher.table.metadata_location = committed.metadata, committed.metadata_location
    return snapshot_id(committed)


def _combined(matches: list[ColdMatch]) -> tuple[list[tuple[DataFile, int]], list[tuple[DataFile, pa.Array]]]:
    """The files the ranges' matches drop (with their rows), and those they match in part with
    every range's matched positions together (two hours of one compacted day's file are one
    rewrite)."""
    dropped = {f.file_path: (f, rows) for m in matches for f, rows in m.whole}
    partial: dict[str, tuple[DataFile, list[pa.Array]]] = {}
    for m in matches:
        for data_file, positions in m.partial:
            if data_file.file_path not in dropped:
                partial.setdefault(data_file.file_path, (data_file, []))[1].append(positions)
    return list(dropped.values()), [
        (data_file, pc.unique(pa.chunked_array(arrays)).combine_chunks() if len(arrays) > 1 else arrays[0])
        for data_file, arrays in partial.values()
    ]


def _write(table: Table, rows: pa.Table, split_column: str) -> list[DataFile]:
    writer = DataFileWriter(DataFileFormat(table, rows.schema), split_column, f"rewrite-{table.name()[-1]}")
    try:
        for batch in rows.to_batches():
            writer.write(batch)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def discard(table: Table, written: Iterable[Written]) -> None:
    """Deletes the data files of ranges no snapshot references."""
    _delete(table, (data_file for w in written for data_file in w.data_files))


def _delete(table: Table, data_files: Iterable[DataFile]) -> None:
    for data_file in data_files:
        try:
            table.io.delete(data_file.file_path)
        except FileNotFoundError:
            pass
