"""The cold schema follows warm: a column warm added is added to cold (optional), any other
difference is refused before anything is written."""

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.table import Table

from cold_assets.offload.bookkeeping import snapshot_id
from cold_assets.tables import MirroredTable


class IncompatibleWarmSchema(ValueError):
    """The warm table changed in a way the cold table cannot follow (not an added nullable column)."""


class PlanOutdated(CommitFailedException):
    """The table's current snapshot moved on between planning a checkpoint and writing it
    (evolving the schema reloaded the table after another writer's commit). A commit now would
    assert the other writer's snapshot while carrying a plan made before it: the checkpoint
    starts over from reconciliation instead, as after any conflict."""


def _comparable(t: pa.DataType) -> pa.DataType:
    return {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}.get(t, t)


def evolve_schema(table: Table, spec: MirroredTable, stream_schema: pa.Schema) -> Table:
    """Adds warm columns the cold table lacks (as optional); refuses any other difference."""
    cold = {f.name: f for f in schema_to_pyarrow(table.schema(), include_field_ids=False)}
    problems, added = [], []
    for column in stream_schema:
        have = cold.get(column.name)
        if have is None:
            added.append(column.with_nullable(True))
        elif _comparable(have.type) != _comparable(column.type):
            problems.append(f"column {column.name} is {column.type} in warm {spec.warm}, {have.type} in cold")
        elif column.nullable and not have.nullable:
            problems.append(f"column {column.name} is nullable in warm {spec.warm} but required in cold")
    stream_names = set(stream_schema.names)
    for name, have in cold.items():
        if name not in stream_names and not have.nullable:
            problems.append(f"required cold column {name} is missing from warm {spec.warm}")
    if problems:
        raise IncompatibleWarmSchema(
            f"cold.{spec.cold} cannot follow warm {spec.warm}: " + "; ".join(problems) + "; nothing was written"
        )
    if added:
        with table.update_schema() as update:
            update.union_by_name(pa.schema(added))
        table = table.refresh()
    return table


def evolve_for_checkpoint(table: Table, spec: MirroredTable, stream_schema: pa.Schema) -> Table:
    """`evolve_schema` for a checkpoint planned on `table`'s current snapshot: raises
    PlanOutdated when the table reloaded after evolving is at another writer's snapshot."""
    planned_on = snapshot_id(table)
    table = evolve_schema(table, spec, stream_schema)
    if snapshot_id(table) != planned_on:
        raise PlanOutdated(
            f"cold.{spec.cold}: snapshot {snapshot_id(table)} was committed by another writer after this checkpoint was "
            f"planned on {planned_on}"
        )
    return table
