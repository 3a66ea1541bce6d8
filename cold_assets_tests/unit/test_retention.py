"""Which snapshots the nightly expiry thins out of the retention (maintenance/operations.py)."""

from datetime import UTC, datetime, timedelta

from cold_assets.maintenance.operations import AncestorSnapshot, thinned_snapshots

NOW = datetime(2026, 12, 6, 2, 20, tzinfo=UTC)  # the expiry's schedule: 02:20 UTC
DAY = timedelta(days=1)


def ancestry_every_15_minutes(days: int, rewrites_at: tuple[datetime, ...] = ()) -> list[AncestorSnapshot]:
    """The ancestry of `days` of 15-minute offload commits up to NOW, newest first; a
    compaction's rewrite commits at each of `rewrites_at` besides."""
    times = sorted({NOW - timedelta(minutes=15 * i) for i in range(days * 96)} | set(rewrites_at))
    snapshots, parent = [], None
    for i, at in enumerate(times):
        snapshots.append(AncestorSnapshot(i + 1, int(at.timestamp() * 1000), parent, data_rewrite=at in rewrites_at))
        parent = i + 1
    return snapshots[::-1]


def kept_after(ancestry: list[AncestorSnapshot], thinned: list[int], older_than: datetime) -> list[AncestorSnapshot]:
    cutoff = int(older_than.timestamp() * 1000)
    return [s for s in ancestry if s.snapshot_id not in set(thinned) and s.committed_ms >= cutoff]


def test_a_week_keeps_every_commit_of_the_last_day_and_the_last_of_each_day_before():
    ancestry = ancestry_every_15_minutes(days=8)  # commits at :05, :20, :35 and :50
    older_than, every_commit_after = NOW - 7 * DAY, NOW - DAY
    thinned = thinned_snapshots(ancestry, older_than, every_commit_after, DAY, referenced=set())
    kept = [datetime.fromtimestamp(s.committed_ms / 1000, UTC) for s in kept_after(ancestry, thinned, older_than)]
    assert [at for at in kept if at >= every_commit_after] == [NOW - timedelta(minutes=15 * i) for i in range(97)]
    # Before the last day, the last commit of each UTC day: 02:05 of the day the window ends
    # in, 23:50 of the six days before.
    assert [at for at in kept if at < every_commit_after] == [datetime(2026, 12, 5, 2, 5, tzinfo=UTC)] + [
        datetime(2026, 12, 5, 23, 50, tzinfo=UTC) - d * DAY for d in range(1, 7)
    ]
    assert len(kept) == 104  # of the 673 the week holds


def test_nothing_outside_the_window_is_thinned_and_hourly_keeps_one_an_hour():
    ancestry = ancestry_every_15_minutes(days=3)
    older_than, every_commit_after = NOW - 2 * DAY, NOW - DAY
    thinned = thinned_snapshots(ancestry, older_than, every_commit_after, timedelta(hours=1), referenced=set())
    window = {s.snapshot_id for s in ancestry if older_than.timestamp() * 1000 <= s.committed_ms < every_commit_after.timestamp() * 1000}
    assert set(thinned) <= window
    assert len(window) - len(thinned) == 25  # the last commit of each hour the window touches (02:20 to 02:20)
    assert thinned_snapshots(ancestry, older_than, older_than, DAY, referenced=set()) == []  # an empty window thins nothing


def test_branches_tags_and_each_compaction_with_its_parent_stay():
    rewrite_at = NOW - 3 * DAY + timedelta(minutes=7)  # a nightly compaction, 3 days ago
    ancestry = ancestry_every_15_minutes(days=8, rewrites_at=(rewrite_at,))
    rewrite = next(s for s in ancestry if s.data_rewrite)
    tagged = ancestry[300].snapshot_id
    thinned = set(thinned_snapshots(ancestry, NOW - 7 * DAY, NOW - DAY, DAY, referenced={tagged}))
    assert rewrite.snapshot_id not in thinned and rewrite.parent_id not in thinned
    assert tagged not in thinned
    assert len(thinned) == len(thinned_snapshots(ancestry, NOW - 7 * DAY, NOW - DAY, DAY, referenced=set())) - 1
