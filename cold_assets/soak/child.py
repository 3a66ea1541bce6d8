"""One offload run in a child process, for the soak to SIGKILL at a random moment.

    python -m cold_assets.soak.child '{"tables": [...], "config": {...}, "tags": {...}}'
"""

import json
import sys


def main() -> None:
    from dagster import AssetCheckKey

    from cold_assets.definitions import build_definitions
    from cold_assets.defs.assets import cold_asset_key
    from cold_assets.defs.checks import CHECK_NAMES
    from cold_assets.defs.schedules import OFFLOAD_JOB
    from cold_assets.settings import Settings
    from cold_assets.tables import table_by_cold_name
    from cold_assets.tools.instance import embedded_instance

    spec = json.loads(sys.argv[1])
    settings = Settings.from_env()
    job = build_definitions(settings).resolve_job_def(OFFLOAD_JOB)
    selected = {cold_asset_key(table_by_cold_name(t)) for t in spec["tables"]}
    job = job.get_subset(asset_selection=selected, asset_check_selection={AssetCheckKey(k, c) for k in selected for c in CHECK_NAMES})
    job.execute_in_process(instance=embedded_instance(settings), run_config=spec["config"], tags=spec["tags"], raise_on_error=False)


if __name__ == "__main__":
    main()
