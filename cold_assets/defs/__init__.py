"""The Dagster wiring only: resources, the cold assets and their checks and metadata, schedules, nightly jobs, sensors and alerts."""
