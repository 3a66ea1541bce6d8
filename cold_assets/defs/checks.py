"""Parity checks on every cold asset: the tiers agree, hour by hour, for the hours a run
materialized.

The checks run inside the asset's own step, right after the offload and on the same warm
connection: one query per tier covers every hour of the run (parity/checksums.py), and a check adds
no Dagster step of its own. The asset is subsettable, so the checks also run alone (from
the UI, or the audit's repair flow) without offloading. row_count_parity is blocking:
anything downstream of a cold table whose counts differ does not run.
"""

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    asset_check,
)

from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.maintenance.operations import RewriteProof, latest_data_rewrite, prove_rewrite
from cold_assets.parity.checksums import HourParity, ParityBasis
from cold_assets.tables import MirroredTable

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


COMPARED_AT = "compared_at"
OPEN_BASES = (ParityBasis.WARM_TO_WATERMARK, ParityBasis.AS_OFFLOADED)  # the bases of hours still open


def verdicts_metadata(
    parities: list[HourParity], failed: list[HourParity], refused: frozenset[str] = frozenset()
) -> dict[str, MetadataValue]:
    """Each hour's verdict, in the vocabulary the parity checks and the daily audit share
    (monitoring/hour_states.py reads it back): the hours compared, those still open, those
    cold-only, those compared on counts only, and those that differ (with `refused` where the
    offload refused the hour)."""
    compared = [p for p in parities if not p.cold_only]
    times = [p.compared_at for p in parities if p.compared_at is not None]
    return {
        # When the earliest of these hours was read: what orders this verdict against others
        # (a check recorded after an audit may have compared before it).
        **({COMPARED_AT: MetadataValue.timestamp(min(times))} if times else {}),
        "warm_rows": MetadataValue.int(sum(p.warm_rows for p in compared)),
        "cold_rows": MetadataValue.int(sum(p.cold_rows for p in parities)),
        "hours_checked": MetadataValue.int(len(compared)),
        "hours": MetadataValue.json([p.partition_key for p in parities]),
        "hours_open": MetadataValue.json([p.partition_key for p in parities if p.basis in OPEN_BASES]),
        # Compared with what a reprocess wrote: warm keeps the earlier logic's rows, by design.
        "hours_reprocessed": MetadataValue.json([p.partition_key for p in parities if p.basis is ParityBasis.REPROCESSED]),
        "hours_cold_only": MetadataValue.json([p.partition_key for p in parities if p.cold_only]),
        # Compared on counts only: ClickHouse could not read this cold tier's files.
        "hours_unchecked": MetadataValue.json([p.partition_key for p in parities if not p.cold_only and not p.content_checked]),
        "hours_differing": MetadataValue.json(
            [
                {"hour": p.partition_key, "warm_rows": p.warm_rows, "cold_rows": p.cold_rows, "basis": p.basis.value,
                 "warm_rows_now": p.warm_rows_now, "refused": p.partition_key in refused, "warm_moved": p.warm_moved}
                for p in failed
            ]
        ),
    }


def _result(
    asset_key: AssetKey, check: str, parities: list[HourParity], failed: list[HourParity], what: str,
    refused: frozenset[str] = frozenset(),
) -> AssetCheckResult:
    compared = [p for p in parities if not p.cold_only]
    cold_only = [p.partition_key for p in parities if p.cold_only]
    metadata = verdicts_metadata(parities, failed, refused)
    if failed:
        description = f"{what}: {len(failed)} of {len(compared)} hours differ: " + ", ".join(
            f"{p.partition_key} ({p.basis.value}: warm {p.warm_rows}, cold {p.cold_rows})" for p in failed[:10]
        )
    else:
        description = f"{what}: {len(compared)} hours equal"
    reprocessed = sum(p.basis is ParityBasis.REPROCESSED for p in parities)
    if reprocessed:
        description += f"; {reprocessed} hours reprocessed, compared with what the reprocess wrote (warm keeps the earlier logic)"
    if cold_only:
        # Older than the warm retention: cold is the only copy; there is nothing to compare.
        description += f"; {len(cold_only)} hours cold-only (older than the warm retention), not compared"
    return AssetCheckResult(
        asset_key=asset_key,
        check_name=check,
        passed=not failed,
        severity=AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=description,
    )


def parity_check_results(
    parities: list[HourParity], selected: set[AssetCheckKey], refused: frozenset[str] = frozenset()
) -> list[AssetCheckResult]:
    """The parity checks of a run's hours. An hour the offload refused (warm lost rows cold
    keeps) fails both, marked `refused`, whatever its counts say: rows that arrived late can
    make up the count of rows warm lost, and the sensors must not answer with a replace."""
    results = []
    for key in sorted(selected, key=lambda k: k.name):
        if key.name == ROW_COUNT_PARITY:
            failed = [p for p in parities if not p.counts_match or p.partition_key in refused]
            results.append(_result(key.asset_key, key.name, parities, failed, "row counts", refused))
        elif key.name == CONTENT_PARITY:
            failed = [p for p in parities if not p.content_matches or p.partition_key in refused]
            result = _result(key.asset_key, key.name, parities, failed, "content checksums", refused)
            if not failed and not all(p.content_checked for p in parities if not p.cold_only):
                # Counts agree, but ClickHouse cannot read this cold tier yet: say so, as a warning.
                result = AssetCheckResult(
                    asset_key=key.asset_key,
                    check_name=key.name,
                    passed=False,
                    severity=AssetCheckSeverity.WARN,
                    metadata=result.metadata,
                    description="content checksums not computed: ClickHouse cannot read this cold table's location yet",
                )
            results.append(result)
    return results


# Compaction must not change a table's content. The nightly compaction proves each data
# rewrite commit as it makes it (defs/nightly.py); this check, defined on every cold asset so the UI
# shows its status, is where that proof is recorded, and run on its own it proves the
# table's latest rewrite again. It is not part of the offload job.
COMPACTION_PRESERVED_CONTENT = "compaction_preserved_content"


def rewrite_proof_evaluation(asset_key: AssetKey, proofs: list[RewriteProof]) -> dict:
    """The fields of the check's result (AssetCheckResult or AssetCheckEvaluation)."""
    changed = [p for p in proofs if not p.unchanged]
    metadata = {
        "rewrites_verified": MetadataValue.int(len(proofs)),
        "rows_before": MetadataValue.int(sum(p.rows_before for p in proofs)),
        "rows_after": MetadataValue.int(sum(p.rows_after for p in proofs)),
        "proofs": MetadataValue.json(
            [
                {
                    "snapshot_id": str(p.snapshot_id),
                    "parent_id": str(p.parent_id),
                    "range": [p.start.isoformat(), p.end.isoformat()],
                    "rows": [p.rows_before, p.rows_after],
                    "checksum": [str(p.checksum_before), str(p.checksum_after)],
                }
                for p in proofs
            ]
        ),
    }
    if changed:
        description = "compaction changed the content of " + ", ".join(
            f"snapshot {p.snapshot_id} ({p.rows_before} -> {p.rows_after} rows, {len(p.differing_buckets)} buckets differ)" for p in changed
        )
    elif proofs:
        description = f"{len(proofs)} rewrite commit(s): same rows ({proofs[-1].rows_after}) and checksum as their parents"
    else:
        description = "no compaction commit to verify"
    return dict(
        asset_key=asset_key,
        check_name=COMPACTION_PRESERVED_CONTENT,
        passed=not changed,
        severity=AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=description,
    )


def compaction_check(table: MirroredTable, asset_key: AssetKey) -> AssetChecksDefinition:
    @asset_check(
        asset=asset_key,
        name=COMPACTION_PRESERVED_CONTENT,
        description="The latest compaction commit left rows and content checksum unchanged (checked against its parent snapshot).",
    )
    def _check(iceberg: IcebergResource, clickhouse: ClickHouseResource) -> AssetCheckResult:
        cold_table = iceberg.load_table(table.cold_identifier)
        latest = latest_data_rewrite(cold_table)
        proofs = []
        if latest is not None:
            with clickhouse.connect() as client:
                proofs = [prove_rewrite(client, cold_table, table, latest.snapshot_id)]
        fields = rewrite_proof_evaluation(asset_key, proofs)
        fields.pop("asset_key")
        fields.pop("check_name")
        return AssetCheckResult(**fields)

    return _check
