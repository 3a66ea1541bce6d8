"""The embedded default's Dagster instance, under COLD_HOME/dagster (SQLite storage).

The repository root's dagster.yaml is the same instance for `dagster dev` run there with the
default COLD_HOME; production uses docker/dagster.yaml (PostgreSQL) through DAGSTER_HOME."""

from pathlib import Path

from dagster import DagsterInstance

from cold_assets.settings import Settings

# chDB is opened by one process at a time, so the embedded instance runs one run at a time;
# queued runs wait instead of failing on the lock.
EMBEDDED_INSTANCE_YAML = """\
# Written by cold-assets for the embedded default (chDB warm tier).
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 1
telemetry:
  enabled: false
"""


def embedded_dagster_home(settings: Settings) -> Path:
    home = settings.home / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text() != EMBEDDED_INSTANCE_YAML:
        config.write_text(EMBEDDED_INSTANCE_YAML)
    return home


def embedded_instance(settings: Settings) -> DagsterInstance:
    return DagsterInstance.from_config(str(embedded_dagster_home(settings)))
