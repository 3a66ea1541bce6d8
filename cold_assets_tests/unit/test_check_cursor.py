"""The sensors' cursor over a check's records, kept across releases."""

from dagster import AssetCheckKey, AssetKey, DagsterInstance

from cold_assets.defs.check_history import CheckCursor, new_evaluations


def test_a_cursor_in_its_older_form_is_read_as_the_floor_and_rewritten():
    key = AssetCheckKey(AssetKey(["cold", "raw_trades"]), "content_parity")
    state = {"seen": {key.to_user_string(): 57}, "failing": {}}
    with DagsterInstance.ephemeral() as instance:
        assert new_evaluations(instance, key, state) == []
    assert "seen" not in state
    assert CheckCursor.from_json(state["checks"][key.to_user_string()]) == CheckCursor(floor=57)


def test_a_cursor_round_trips_through_json():
    cursor = CheckCursor(floor=10, handed={12, 15})
    assert CheckCursor.from_json(cursor.to_json()) == cursor
