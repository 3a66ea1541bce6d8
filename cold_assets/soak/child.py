"""One offload run in a process of its own, as a run worker is in production, with the faults
the soak chose for it; the soak may SIGKILL it at any moment.

    python -m cold_assets.soak.child '{"tables": [...], "config": {...}, "tags": {...}, "faults": [...]}'

It prints the run's outcome on a line of its own, after OUTCOME: {"run_id", "success", "fired": [fault names]}.
(In a process of its own the run also takes the embedded warm tier's leaked threads with it,
warm/isolated.py: the soak's own process lives for hundreds of runs.)
"""

import json
import sys
from contextlib import ExitStack
from datetime import timedelta

OUTCOME = "soak-run-outcome: "


def main() -> None:
    from dagster import AssetCheckKey

    from cold_assets.definitions import build_definitions
    from cold_assets.defs.assets import cold_asset_key
    from cold_assets.defs.checks import CHECK_NAMES
    from cold_assets.defs.resources import IcebergResource
    from cold_assets.defs.schedules import OFFLOAD_JOB
    from cold_assets.settings import Settings
    from cold_assets.soak.faults import second_writer, unknown_commit_outcome, writer_before_plan
    from cold_assets.tables import TABLES, table_by_cold_name
    from cold_assets.tools.instance import embedded_instance

    spec = json.loads(sys.argv[1])
    settings = Settings.from_env()
    job = build_definitions(settings).resolve_job_def(OFFLOAD_JOB)
    if len(spec["tables"]) < len(TABLES):
        selected = {cold_asset_key(table_by_cold_name(t)) for t in spec["tables"]}
        job = job.get_subset(
            asset_selection=selected, asset_check_selection={AssetCheckKey(k, c) for k in selected for c in CHECK_NAMES}
        )
    with ExitStack() as stack:
        faults = {}
        other_writers = {"second_writer": second_writer, "writer_before_plan": writer_before_plan}
        if other_writers.keys() & set(spec["faults"]):  # their catalog, only when one is asked for
            catalog = IcebergResource.from_settings(settings).catalog()
            lag = timedelta(seconds=settings.settle_lag_seconds)
            for name, fault in other_writers.items():
                if name in spec["faults"]:
                    faults[name] = stack.enter_context(fault(catalog, lag))
        if "unknown_commit" in spec["faults"]:
            faults["unknown_commit"] = stack.enter_context(unknown_commit_outcome())
        result = job.execute_in_process(
            instance=embedded_instance(settings), run_config=spec["config"], tags=spec["tags"], raise_on_error=False
        )
    fired = [name for name, injected in faults.items() if injected.fired]
    print(OUTCOME + json.dumps({"run_id": result.run_id, "success": result.success, "fired": fired}), flush=True)


if __name__ == "__main__":
    main()
