"""The command line's own checks of its flags: a bad value names the flag and what was wrong,
before anything reads a tier or writes a file."""

from datetime import UTC, datetime

import pytest

from cold_assets.tools.cli import build_parser


def _refused(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_a_time_flag_that_is_no_date_names_the_flag(capsys):
    said = _refused(capsys, "audit", "--from", "yesterday", "--to", "2026-12-02")
    assert "argument --from" in said and "'yesterday' is not an ISO 8601 date or date-time" in said


def test_a_time_inside_an_hour_is_refused_not_floored(capsys):
    said = _refused(capsys, "audit", "--from", "2026-12-01", "--to", "2026-12-01T17:30")
    assert "argument --to" in said and "not on the hour" in said and "2026-12-01T17:00" in said


def test_hours_are_read_as_utc_without_an_offset():
    args = build_parser().parse_args(["audit", "--from", "2026-12-01T13:00", "--to", "2026-12-01T15:00+01:00"])
    assert args.start == datetime(2026, 12, 1, 13, tzinfo=UTC) and args.end == datetime(2026, 12, 1, 14, tzinfo=UTC)


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    from importlib.metadata import version

    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"cold-assets {version('cold-assets')}"


def test_the_partitions_start_takes_iso_as_the_flags_do_and_names_itself_when_wrong():
    from cold_assets.partitions import configured_start

    assert configured_start("2026-01-01T00:00") == configured_start("2026-01-01-00:00") == "2026-01-01-00:00"
    assert configured_start("2026-01-01T01:00+01:00") == "2026-01-01-00:00"
    with pytest.raises(ValueError, match="COLD_PARTITIONS_START='January' is not an hour"):
        configured_start("January")
    with pytest.raises(ValueError, match="COLD_PARTITIONS_START='2026-01-01T00:30' is not on the hour"):
        configured_start("2026-01-01T00:30")
