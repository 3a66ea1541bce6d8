"""The embedded chDB path is held by one process at a time: others wait, or fail clearly."""

import subprocess
import sys
import time
from datetime import timedelta

import pytest

from cold_assets.defs.resources import ClickHouseResource
from cold_assets.warm.embedded_lock import EmbeddedWarmTierBusy

HOLD = """
import sys, time
from cold_assets.defs.resources import ClickHouseResource
with ClickHouseResource(chdb_path=sys.argv[1]).connect() as client:
    client.query("SELECT 1")
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _hold(path: str, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_a_second_process_waits_for_the_path_or_names_the_holder(warm):
    holder = _hold(warm.chdb_path, 3)
    try:
        impatient = warm.model_copy(update={"lock_timeout_seconds": 1})
        with pytest.raises(EmbeddedWarmTierBusy, match=rf"held by another process \(pid {holder.pid}\)"):
            with impatient.connect():
                pass
        started = time.monotonic()
        with warm.connect() as client:  # the default waits until the holder is done
            assert client.query("SELECT count() FROM trades_raw").result_rows == [(0,)]
        assert time.monotonic() - started > 0.5
    finally:
        holder.wait(timeout=30)
    assert holder.returncode == 0


def test_nested_use_in_one_process_shares_the_open_client(warm):
    with warm.connect() as outer, warm.connect() as inner:
        assert outer is inner
    with pytest.raises(EmbeddedWarmTierBusy, match="cannot open"):
        with warm.connect(), ClickHouseResource(chdb_path=warm.chdb_path + "-other").connect():
            pass


def test_the_embedded_warm_tier_folder_is_readable_by_its_owner_only(settings, warm):
    """chDB stores named collections (with an s3:// warehouse: the S3 secret) under it."""
    import stat

    assert stat.S_IMODE(settings.chdb_path.stat().st_mode) == 0o700


def test_a_run_of_the_cold_assets_opens_the_embedded_tier_once_and_the_nightly_jobs_per_use(settings, warm, cold, monkeypatch):
    """Every step of a tick's or a repair's run reads warm, one after another in the run's
    process: they share one open of the embedded tier (each open attaches every table, about
    0.1 s, more as parts accumulate), whether the run is the offload job's or one launched for
    a selection of assets (the webserver's materialize, a repair). A longer run (a backfill's)
    and the nightly jobs open it per use, so that the sensors get in between their steps and
    Spark's work keeps nobody waiting."""
    from dagster import AssetKey

    from cold_assets.definitions import build_definitions
    from cold_assets.defs.nightly import COMPACTION_JOB, DAILY_AUDIT_JOB, EXPIRY_JOB
    from cold_assets.defs.resources import HELD_RUN_MAX_HOURS, WARM_OPEN_FOR_THE_RUN
    from cold_assets.partitions import hour_of, partition_key_of
    from cold_assets.tables import TABLES
    from cold_assets_tests.support.offload_helpers import KEYS, feed, run_offload

    feed(warm, hours=1)
    opens = []
    real_open = ClickHouseResource._open_embedded

    def counted_open(path):
        opens.append(path)
        return real_open(path)

    monkeypatch.setattr(ClickHouseResource, "_open_embedded", staticmethod(counted_open))
    result, instance = run_offload(settings, KEYS[:1])
    assert result.success and len(opens) == 1, opens
    opens.clear()
    longer = [partition_key_of(hour_of(KEYS[0]) + timedelta(hours=h)) for h in range(HELD_RUN_MAX_HOURS + 1)]
    backfill, _ = run_offload(settings, longer)  # a backfill's run
    assert backfill.success and len(opens) == len(TABLES), opens

    defs = build_definitions(settings)
    opens.clear()
    selected = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[AssetKey(["cold", "raw_trades"]), AssetKey(["cold", "silver_trades"])],
        partition_key=KEYS[0],
    )
    assert selected.success and len(opens) == 1, opens
    for name in (COMPACTION_JOB, EXPIRY_JOB, DAILY_AUDIT_JOB):
        assert not WARM_OPEN_FOR_THE_RUN.items() <= defs.resolve_job_def(name).tags.items(), name
