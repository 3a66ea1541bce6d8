"""The reprocessed marks' bookkeeping (offload/reprocessed.py), without a table."""

import json
from datetime import UTC, datetime

from cold_assets.offload.reprocessed import PREFIX, Mark, MarkChanges, mark_changes

MARKS = {"2026-11-01-00:00": Mark("10:1", 1, "9:9"), "2026-11-01-01:00": Mark("11:2", 1, "9:9"), "2026-11-02-00:00": Mark("12:3", 1, "9:9")}


def test_a_commit_sets_the_marks_it_was_asked_to_removes_those_it_wrote_unmarked_and_leaves_the_rest():
    written = {
        "2026-11-01-01:00": None,  # warm's rows again
        "2026-11-02-00:00": Mark("13:4", 2, "9:9"),  # reprocessed again
        "2026-11-03-00:00": Mark("14:5", 2, "9:9"),  # newly
        "2026-11-04-00:00": None,  # never marked: nothing to remove
    }
    changes = mark_changes(MARKS, written, None)
    assert changes.removed == [f"{PREFIX}2026-11-01-01:00"]
    assert sorted(changes.set) == [f"{PREFIX}2026-11-02-00:00", f"{PREFIX}2026-11-03-00:00"]
    assert json.loads(changes.set[f"{PREFIX}2026-11-03-00:00"]) == {"fingerprint": "14:5", "schema_id": 2, "warm": "9:9"}
    assert not mark_changes(MARKS, {"2026-11-02-00:00": Mark("12:3", 1, "9:9")}, None)  # the same mark: no change


def test_an_offload_from_warm_forgets_the_marks_of_ranges_past_the_warm_retention():
    horizon = datetime(2026, 11, 1, 1, tzinfo=UTC)  # a range starting at or before it is cold-only
    assert mark_changes(MARKS, {}, horizon) == MarkChanges({}, [f"{PREFIX}2026-11-01-00:00", f"{PREFIX}2026-11-01-01:00"])
