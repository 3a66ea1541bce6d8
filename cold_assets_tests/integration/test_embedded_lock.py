"""The embedded chDB path is held by one process at a time: others wait, or fail clearly."""

import subprocess
import sys
import time

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
