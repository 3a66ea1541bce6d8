"""The embedded chDB path is held by one process at a time: others wait, or fail clearly."""

import os
import subprocess
import sys
import time
from pathlib import Path

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


def _counting_opens(monkeypatch) -> list:
    opens: list = []
    real_open = ClickHouseResource._open_embedded

    def counted_open(path):
        opens.append(path)
        return real_open(path)

    monkeypatch.setattr(ClickHouseResource, "_open_embedded", staticmethod(counted_open))
    return opens


def test_a_run_on_the_embedded_tier_opens_it_once_for_all_its_steps(settings, warm, cold, monkeypatch):
    """Every step of a run reads warm, one after another in the run's process: they share one
    open (each attaches every table, about 0.1 s, more as parts accumulate), whether the run
    is the offload job's for an hour or a backfill's for several, or one launched for a
    selection of assets (the webserver's materialize)."""
    from dagster import AssetKey

    from cold_assets.definitions import build_definitions
    from cold_assets_tests.support.offload_helpers import KEYS, feed, run_offload

    feed(warm, hours=3)
    opens = _counting_opens(monkeypatch)
    result, instance = run_offload(settings, KEYS[:1])
    assert result.success and len(opens) == 1, opens
    opens.clear()
    backfill, _ = run_offload(settings, KEYS[1:3])
    assert backfill.success and len(opens) == 1, opens

    opens.clear()
    selected = build_definitions(settings).resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[AssetKey(["cold", "raw_trades"]), AssetKey(["cold", "silver_trades"])],
        partition_key=KEYS[0],
    )
    assert selected.success and len(opens) == 1, opens


def test_a_held_path_is_let_go_to_another_process_while_it_is_not_in_use(warm, monkeypatch):
    """A run holds the tier between its steps, but a sensor's look (another process) must not
    wait for the run's end: the holder lets go as soon as no use is in progress, and its
    next use opens it again, after the waiter's turn."""
    from cold_assets.warm.embedded_lock import held_open

    opens = _counting_opens(monkeypatch)
    with held_open(Path(warm.chdb_path)):
        with warm.connect() as client:
            client.query("SELECT 1")
        with warm.connect() as client:
            client.query("SELECT 1")
        assert len(opens) == 1  # held between the two uses
        looker = subprocess.run([sys.executable, "-c", LOOK, warm.chdb_path, "30"], capture_output=True, text=True, timeout=120)
        assert looker.returncode == 0, looker.stderr
        assert float(looker.stdout) < 3  # let go within the watcher's look, not at the hold's end
        with warm.connect() as client:
            assert client.query("SELECT count() FROM lock_probe").result_rows == [(1,)]  # the looker's row
        assert len(opens) == 2


def test_a_busy_holder_takes_turns_with_a_waiting_process(warm):
    """A holder whose uses follow one another with no pause (a backfill of many steps) still
    lets a waiting process in between two of them: the waiter's ticket is older than the
    holder's next one."""
    holder = subprocess.Popen([sys.executable, "-c", BUSY, warm.chdb_path, "20"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        looker = subprocess.run([sys.executable, "-c", LOOK, warm.chdb_path, "30"], capture_output=True, text=True, timeout=120)
        assert looker.returncode == 0, looker.stderr
        assert float(looker.stdout) < 4  # between two of the holder's uses, not after its 20 s
    finally:
        holder.wait(timeout=120)
    assert holder.returncode == 0


def test_a_waiter_that_died_waiting_holds_up_nobody(warm, monkeypatch):
    """A waiter killed while it waited (a sensor's child past its time) leaves its ticket: once
    stale, nobody defers to it, and it is cleared."""
    from cold_assets.warm import embedded_lock

    folder = Path(warm.chdb_path + ".lock.waiting")
    folder.mkdir(exist_ok=True)
    dead = folder / f"{time.time_ns()}-999999"
    dead.touch()
    old = time.time() - 60
    os.utime(dead, (old, old))
    started = time.monotonic()
    with warm.connect() as client:
        client.query("SELECT 1")
    assert time.monotonic() - started < 2
    assert not embedded_lock._waiters(Path(warm.chdb_path + ".lock"))
    assert not dead.exists()


def test_threads_of_the_holding_process_use_the_tier_between_its_uses(warm, monkeypatch):
    """The live feed of the production-truth tests is a thread of the run's process: it inserts
    between the run's steps, on the held client, while the run still holds the tier."""
    import threading

    from cold_assets.warm.embedded_lock import held_open

    opens = _counting_opens(monkeypatch)
    inserted = threading.Event()

    def feed() -> None:
        with warm.connect() as client:
            client.command("CREATE TABLE IF NOT EXISTS lock_probe (n UInt8) ENGINE = MergeTree ORDER BY n")
            client.command("INSERT INTO lock_probe VALUES (1)")
        inserted.set()

    with held_open(Path(warm.chdb_path)):
        with warm.connect() as client:
            client.query("SELECT 1")
        feeder = threading.Thread(target=feed)
        feeder.start()
        assert inserted.wait(timeout=20)
        feeder.join()
        with warm.connect() as client:
            assert client.query("SELECT count() FROM lock_probe").result_rows == [(1,)]
    assert len(opens) == 1


# Prints how long it waited for the tier (its imports, seconds on a busy machine, not counted).
LOOK = """
import sys, time
from cold_assets.defs.resources import ClickHouseResource
warm = ClickHouseResource(chdb_path=sys.argv[1], lock_timeout_seconds=int(sys.argv[2]))
started = time.monotonic()
with warm.connect() as client:
    print(f"{time.monotonic() - started:.2f}", flush=True)
    client.command("CREATE TABLE IF NOT EXISTS lock_probe (n UInt8) ENGINE = MergeTree ORDER BY n")
    client.command("INSERT INTO lock_probe VALUES (1)")
"""

BUSY = """
import sys, time
from pathlib import Path
from cold_assets.defs.resources import ClickHouseResource
from cold_assets.warm.embedded_lock import held_open
warm = ClickHouseResource(chdb_path=sys.argv[1])
with held_open(Path(sys.argv[1])):
    with warm.connect() as client:
        client.query("SELECT 1")
    print("holding", flush=True)
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        with warm.connect() as client:
            client.query("SELECT 1")
"""
