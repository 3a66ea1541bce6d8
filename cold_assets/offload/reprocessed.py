"""Hours a reprocess replaced while warm still holds them: cold is their judge until warm forgets them.

A reprocess (recovery/reprocess.py) recomputes bronze, silver and gold from cold raw with the
medallion's current logic. For an hour warm still holds, warm keeps the rows its logic made
then, and the two tiers differ by design until the TTL drops warm's. Every part that takes
warm as the source of an hour it holds (the offload and its repairs, the parity checks, the
self-healing and TTL-guard sensors, the federated views' cutover, the audit) must then take
cold's reprocessed rows instead. The table says which hours those are, in its properties: one per such offload range,
`cold-assets.reprocessed.<key>` (the key the hour's; the day's first hour for the daily
bars), holding its `Mark`, what cold must hold there: the fingerprint ("rows:checksum") of
the rows the reprocess wrote, over the fields of the cold schema they were written under and
their own values (parity/checksums.py): a column cold gains later is left out, and no rule of
warm's columns applies. A property per range, so that writers of different ranges never
undo each other's marks. A snapshot summary would not do: the nightly expiry drops it while
warm still holds the hour.

- It is set in the reprocess's own commit (one transaction: data and mark land together or
  not at all), for the hours whose new rows differ from warm's, and removed in the commit of
  any later write of the hour (a second reprocess whose rows warm now has).
- The offload keeps a marked hour as it is: it is never read from warm again
  (offload/plan.py), as an hour past the warm retention is not.
- Parity compares a marked hour warm holds with its mark (ParityBasis.REPROCESSED): cold
  still holding exactly what the reprocess wrote, and warm what it held then, passes.
  Anything else fails, and is alerted, never repaired from warm: cold changed (a lost file,
  a rollback to before the reprocess), or warm did (a late trade the reprocessed rows lack,
  lost rows). Warm is compared by its rows, and a gold hour by its content too (a late trade
  changes a bar, not the number of bars).
- A reprocess also brings the marks of the hours it leaves unchanged in line (a commit of the
  property alone): marked where its rows differ from warm's, cleared where they equal them
  (after a rollback to before a reprocess, a second reprocess with warm's logic clears them).
- An offload's commit drops marks of hours past the warm retention: they are cold-only then
  (a table keeps at most a retention's worth of them).
"""

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from cold_assets.partitions import hour_of

PREFIX = "cold-assets.reprocessed."  # + the range's key: one table property per reprocessed range


@dataclass(frozen=True)
class Mark:
    """What a reprocessed range must hold, and what warm held of it then."""

    fingerprint: str  # "rows:checksum" of the rows the reprocess wrote, over the fields of cold schema `schema_id`
    schema_id: int
    # Warm's fingerprint of the range when it was reprocessed (by parity's rules): a warm hour
    # that moved since took trades (or lost rows) that the reprocessed rows do not reflect.
    warm: str

    def value(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


@dataclass(frozen=True)
class MarkChanges:
    """The table properties a commit sets and removes."""

    set: dict[str, str]
    removed: list[str]

    def __bool__(self) -> bool:
        return bool(self.set or self.removed)


def reprocessed_marks(table: Table) -> dict[str, Mark]:
    """Offload range key -> the Mark a reprocess left there."""
    marks = {}
    for name, value in table.properties.items():
        if name.startswith(PREFIX):
            try:
                stored = json.loads(value)
                marks[name.removeprefix(PREFIX)] = Mark(str(stored["fingerprint"]), int(stored["schema_id"]), str(stored["warm"]))
            except (ValueError, TypeError, KeyError) as error:
                raise ValueError(
                    f"table property {name} of {'.'.join(table.name())} is not a mark "
                    f'({{"fingerprint": "rows:checksum", "schema_id": n, "warm": "rows:checksum"}}): {value[:200]}'
                ) from error
    return marks


def mark_changes(marks: Mapping[str, Mark], written: Mapping[str, Mark | None], drop_before: datetime | None) -> MarkChanges:
    """What a commit changes in `marks` when it writes the ranges of `written` (range key ->
    the Mark to leave, None: its rows are warm's again) and, with `drop_before`, forgets the
    ranges starting at or before it (cold-only)."""
    to_set = {f"{PREFIX}{key}": mark.value() for key, mark in sorted(written.items()) if mark is not None and marks.get(key) != mark}
    removed = [
        f"{PREFIX}{key}" for key in sorted(marks)
        if (key in written and written[key] is None) or (key not in written and drop_before is not None and hour_of(key) <= drop_before)
    ]
    return MarkChanges(to_set, removed)


def set_marks(table: Table, written: Mapping[str, Mark | None]) -> bool:
    """Brings the marks of the ranges of `written` in line (see `mark_changes`) in a commit of
    the properties alone, where they differ; True if it committed."""
    for attempt in range(SET_MARKS_RETRIES + 1):
        changes = mark_changes(reprocessed_marks(table), written, None)
        if not changes:
            return False
        tx = table.transaction()
        if changes.set:
            tx.set_properties(changes.set)
        if changes.removed:
            tx.remove_properties(*changes.removed)
        try:
            tx.commit_transaction()
            return True
        except (CommitFailedException, KeyError):
            # Another writer committed meanwhile (the schedule's tick, a day reprocessed beside
            # this one), or removed a mark this commit removes: read the marks again.
            if attempt == SET_MARKS_RETRIES:
                raise
            table = table.refresh()
    return False


SET_MARKS_RETRIES = 5
