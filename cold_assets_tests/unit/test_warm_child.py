"""warm/isolated.py: the embedded warm tier's work of a long-lived process, in a child process
of its own (real child processes; the functions below are what they run)."""

import os

import pytest

from cold_assets.defs.resources import ClickHouseResource
from cold_assets.warm.embedded_lock import EmbeddedWarmTierBusy
from cold_assets.warm.isolated import WarmChildFailed, on_warm


def where_and_what(resource: ClickHouseResource, value: int) -> tuple[int, str, int]:
    return os.getpid(), resource.chdb_path, value * 2


def busy() -> None:
    raise EmbeddedWarmTierBusy("held by pid 1")


class Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a} {b}")


def raises_unpicklable() -> None:
    raise Unpicklable(1, 2)


def dies() -> None:
    os._exit(3)


def sleeps() -> None:
    import time

    time.sleep(30)


def test_the_work_runs_in_a_child_on_the_embedded_tier_and_here_on_a_server():
    resource = ClickHouseResource(chdb_path="/nowhere/warm")
    pid, path, doubled = on_warm(True, 60, where_and_what, resource, value=21)
    assert pid != os.getpid() and path == "/nowhere/warm" and doubled == 42  # the resource by its configuration
    assert on_warm(False, 60, where_and_what, resource, 1)[0] == os.getpid()


def test_the_childs_exception_is_raised_here_with_its_type_and_where_it_came_from():
    with pytest.raises(EmbeddedWarmTierBusy, match="held by pid 1") as raised:
        on_warm(True, 60, busy)
    assert "child process" in "".join(raised.value.__notes__)
    with pytest.raises(WarmChildFailed, match="Unpicklable"):
        on_warm(True, 60, raises_unpicklable)


def test_a_child_that_dies_or_hangs_is_a_clear_error():
    with pytest.raises(WarmChildFailed, match=r"dies ended without a result in its child process \(exit 3"):
        on_warm(True, 60, dies)
    with pytest.raises(WarmChildFailed, match="more than 2 s"):
        on_warm(True, 2, sleeps)


def test_a_stray_checkout_in_the_working_directory_is_not_what_the_child_imports(tmp_path, monkeypatch):
    stray = tmp_path / "cold_assets"
    stray.mkdir()
    (stray / "__init__.py").write_text("raise ImportError('the stray checkout was imported')\n")
    monkeypatch.chdir(tmp_path)
    assert on_warm(True, 60, where_and_what, ClickHouseResource(chdb_path="/x"), 1)[2] == 2


def test_a_profiled_child_keeps_its_stats_and_a_profile_it_cannot_write_changes_nothing(tmp_path, monkeypatch):
    import pstats

    from cold_assets.warm.isolated import PROFILE_ENV

    resource = ClickHouseResource(chdb_path="/nowhere/warm")
    monkeypatch.setenv(PROFILE_ENV, str(tmp_path / "tick"))
    assert on_warm(True, 60, where_and_what, resource, 2)[2] == 4
    stats = pstats.Stats(str(tmp_path / "tick-where_and_what.pstats")).stats  # type: ignore[attr-defined]
    assert any(function == "where_and_what" for _, _, function in stats)
    monkeypatch.setenv(PROFILE_ENV, str(tmp_path / "no" / "such" / "folder" / "tick"))  # diagnostics only
    assert on_warm(True, 60, where_and_what, resource, 3)[2] == 6
