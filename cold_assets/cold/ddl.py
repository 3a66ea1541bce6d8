"""The cold tables as ddl/iceberg declares them, and `init` for them.

`ensure_cold_tables` creates what is missing, leaves what matches, adds new optional columns
(additive schema evolution) and refuses every other difference with an error that names the
table and the difference. It plans all ten tables before changing any, so a refusal leaves
every table untouched; it never drops or recreates a table.
"""

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import parse_transform
from pyiceberg.types import IcebergType, NestedField

from cold_assets.settings import ddl_dir
from cold_assets.tables import COLD_NAMESPACE, TABLES

FIRST_PARTITION_FIELD_ID = 1000
# Properties that are fixed at creation and compared, not updated.
CREATION_ONLY_PROPERTIES = {"format-version"}


class ColdTableConflict(RuntimeError):
    """An existing cold table differs from ddl/iceberg in a way init will not change."""


@dataclass(frozen=True)
class ColdTableDefinition:
    name: str
    schema: Schema
    partitioning: tuple[tuple[str, str], ...]  # (source column, transform)
    properties: dict[str, str]

    @property
    def identifier(self) -> tuple[str, str]:
        return (COLD_NAMESPACE, self.name)

    def partition_spec(self, schema: Schema) -> PartitionSpec:
        return PartitionSpec(
            *(
                PartitionField(
                    source_id=schema.find_field(column).field_id,
                    field_id=FIRST_PARTITION_FIELD_ID + i,
                    transform=parse_transform(transform),
                    name=column if transform == "identity" else f"{column}_{transform}",
                )
                for i, (column, transform) in enumerate(self.partitioning)
            )
        )


def _flatten(columns: list[Any]) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for column in columns:
        flat.extend(_flatten(column) if isinstance(column, list) else [column])
    return flat


def load_definitions(path: Path | None = None) -> dict[str, ColdTableDefinition]:
    """ddl/iceberg/cold_tables.yaml, checked against the table catalog."""
    path = path or ddl_dir() / "iceberg" / "cold_tables.yaml"
    document = yaml.safe_load(path.read_text())
    tables = document.get("tables") or {}
    expected = {t.cold for t in TABLES}
    if set(tables) != expected:
        raise ValueError(
            f"{path}: tables {sorted(set(tables))} differ from the catalog's {sorted(expected)}"
        )
    definitions = {}
    for name, spec in tables.items():
        fields = []
        for field_id, column in enumerate(_flatten(spec["columns"]), start=1):
            try:
                field_type = IcebergType.handle_primitive_type(column["type"], None)  # type: ignore[operator]  # a pydantic validator, callable
            except Exception as exc:
                raise ValueError(f"{path}: table {name}, column {column.get('name')}: {exc}") from None
            fields.append(NestedField(field_id, column["name"], field_type, required=bool(column["required"])))
        partitioning = tuple((p["source"], p["transform"]) for p in spec["partitioning"])
        properties = {str(k): str(v) for k, v in spec["properties"].items()}
        definition = ColdTableDefinition(name, Schema(*fields), partitioning, properties)
        definition.partition_spec(definition.schema)  # validates column names and transforms
        definitions[name] = definition
    return definitions


class TableAction(str, Enum):
    CREATE = "create"
    UNCHANGED = "unchanged"
    EVOLVE = "evolve"


@dataclass
class TablePlan:
    definition: ColdTableDefinition
    action: TableAction
    add_columns: list[NestedField]
    set_properties: dict[str, str]
    notes: list[str]


def _partitioning_of(table: Table) -> tuple[tuple[str, str], ...]:
    schema = table.schema()
    return tuple((schema.find_column_name(f.source_id) or "?", str(f.transform)) for f in table.spec().fields)


def plan_table(catalog: Catalog, definition: ColdTableDefinition) -> TablePlan:
    try:
        table = catalog.load_table(definition.identifier)
    except NoSuchTableError:
        return TablePlan(definition, TableAction.CREATE, [], {}, [])
    name = ".".join(definition.identifier)
    problems: list[str] = []
    notes: list[str] = []
    add: list[NestedField] = []
    current = {f.name: f for f in table.schema().fields}
    for wanted in definition.schema.fields:
        have = current.get(wanted.name)
        if have is None:
            if wanted.required:
                problems.append(f"column {wanted.name} is missing and is required (only optional columns can be added)")
            else:
                add.append(wanted)
        elif have.field_type != wanted.field_type:
            problems.append(f"column {wanted.name} is {have.field_type} in the table, {wanted.field_type} in ddl/iceberg")
        elif have.required != wanted.required:
            problems.append(
                f"column {wanted.name} is {'required' if have.required else 'optional'} in the table, "
                f"{'required' if wanted.required else 'optional'} in ddl/iceberg"
            )
    extra = [c for c in current if c not in {f.name for f in definition.schema.fields}]
    if extra:
        notes.append(f"columns not in ddl/iceberg (added by schema evolution?): {', '.join(extra)}")
    have_parts, want_parts = _partitioning_of(table), definition.partitioning
    if have_parts != want_parts:
        problems.append(f"partitioning is {list(have_parts)} in the table, {list(want_parts)} in ddl/iceberg")
    set_props = {}
    for key, value in definition.properties.items():
        if table.properties.get(key) == value:
            continue
        if key in CREATION_ONLY_PROPERTIES:
            actual = str(table.metadata.format_version) if key == "format-version" else table.properties.get(key)
            if actual != value:
                problems.append(f"{key} is {actual} in the table, {value} in ddl/iceberg")
        else:
            set_props[key] = value
    if problems:
        raise ColdTableConflict(f"{name} conflicts with ddl/iceberg: " + "; ".join(problems) + "; table left untouched")
    action = TableAction.EVOLVE if add or set_props else TableAction.UNCHANGED
    return TablePlan(definition, action, add, set_props, notes)


def ensure_cold_tables(catalog: Catalog) -> list[TablePlan]:
    """Plans every table first (any conflict raises before a change), then applies the plans."""
    plans, conflicts = [], []
    for definition in load_definitions().values():
        try:
            plans.append(plan_table(catalog, definition))
        except ColdTableConflict as conflict:
            conflicts.append(str(conflict))
    if conflicts:
        raise ColdTableConflict("\n".join(conflicts))
    catalog.create_namespace_if_not_exists(COLD_NAMESPACE)
    for plan in plans:
        d = plan.definition
        if plan.action is TableAction.CREATE:
            catalog.create_table(d.identifier, schema=d.schema, partition_spec=d.partition_spec(d.schema), properties=d.properties)
        elif plan.action is TableAction.EVOLVE:
            table = catalog.load_table(d.identifier)
            with table.transaction() as tx:
                if plan.add_columns:
                    with tx.update_schema() as update:
                        for field in plan.add_columns:
                            update.add_column(field.name, field.field_type, doc=field.doc, required=False)
                if plan.set_properties:
                    tx.set_properties(plan.set_properties)
    return plans
