"""The bounded soak of every `make test`: two fixed seeds, at most 3 minutes in all, on the real
stack (chDB, Iceberg on disk, the Dagster instance, the offload job, its schedule and sensors)
with the production settle lag; Spark's compaction is left to the long runs. A violation
prints its seed and step, and fails the test."""

import subprocess
import sys
import time

import pytest

SEEDS = ("20261205", "31")


@pytest.mark.runs_for(220)
def test_two_fixed_seeds_for_three_minutes_find_no_violation(tmp_path):
    started = time.monotonic()
    args = [sys.executable, "-m", "cold_assets.tools.cli", "soak", "--steps", "300", "--minutes", "3", "--hours", "6", "--no-spark"]
    for seed in SEEDS:
        args += ["--seed", seed]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert "violations: 0" in done.stdout, done.stdout[-3000:]
    operations = next(line for line in done.stdout.splitlines() if line.startswith("operations:"))
    assert sum(int(part.rsplit(" ", 1)[1]) for part in operations.removeprefix("operations: ").split(", ")) >= 10, operations
    assert seconds < 240, f"the bounded soak took {seconds:.0f} s"
