"""Parity checks on every cold asset: the tiers agree, hour by hour, for the hours a run
materialized.

The checks run inside the asset's own step, right after the offload and on the same warm
connection: one query per tier covers every hour of the run (parity.py), and a check adds
no Dagster step of its own. The asset is subsettable, so the checks also run alone (from
the UI, or the audit's repair flow) without offloading. row_count_parity is blocking:
anything downstream of a cold table whose counts differ does not run.
"""

from dagster import AssetCheckKey, AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue

from cold_assets.parity import HourParity

ROW_COUNT_PARITY = "row_count_parity"
CONTENT_PARITY = "content_parity"
CHECK_NAMES = (ROW_COUNT_PARITY, CONTENT_PARITY)


def parity_check_specs(asset_key: AssetKey, warm_table: str) -> list[AssetCheckSpec]:
    return [
        AssetCheckSpec(
            ROW_COUNT_PARITY,
            asset=asset_key,
            blocking=True,
            description=f"Warm rows = cold rows per hour ({warm_table} read as the offload reads it).",
        ),
        AssetCheckSpec(
            CONTENT_PARITY,
            asset=asset_key,
            description="An order-independent checksum of every column of every row, per hour, equal on both tiers.",
        ),
    ]


def _result(asset_key: AssetKey, check: str, parities: list[HourParity], failed: list[HourParity], what: str) -> AssetCheckResult:
    metadata = {
        "warm_rows": MetadataValue.int(sum(p.warm_rows for p in parities)),
        "cold_rows": MetadataValue.int(sum(p.cold_rows for p in parities)),
        "hours_checked": MetadataValue.int(len(parities)),
        "hours": MetadataValue.json([p.partition_key for p in parities]),
        "hours_differing": MetadataValue.json(
            [{"hour": p.partition_key, "warm_rows": p.warm_rows, "cold_rows": p.cold_rows} for p in failed]
        ),
    }
    description = (
        f"{what}: {len(failed)} of {len(parities)} hours differ: " + ", ".join(p.partition_key for p in failed[:10])
        if failed
        else f"{what}: {len(parities)} hours equal"
    )
    return AssetCheckResult(
        asset_key=asset_key, check_name=check, passed=not failed, severity=AssetCheckSeverity.ERROR, metadata=metadata, description=description
    )


def parity_check_results(parities: list[HourParity], selected: set[AssetCheckKey]) -> list[AssetCheckResult]:
    results = []
    for key in sorted(selected, key=lambda k: k.name):
        if key.name == ROW_COUNT_PARITY:
            results.append(_result(key.asset_key, key.name, parities, [p for p in parities if not p.counts_match], "row counts"))
        elif key.name == CONTENT_PARITY:
            failed = [p for p in parities if not p.content_matches]
            result = _result(key.asset_key, key.name, parities, failed, "content checksums")
            if not failed and not all(p.content_checked for p in parities):
                # Counts agree, but ClickHouse cannot read this cold tier yet: say so, as a warning.
                result = AssetCheckResult(
                    asset_key=key.asset_key, check_name=key.name, passed=False, severity=AssetCheckSeverity.WARN,
                    metadata=result.metadata,
                    description="content checksums not computed: ClickHouse cannot read this cold table's location yet",
                )
            results.append(result)
    return results
