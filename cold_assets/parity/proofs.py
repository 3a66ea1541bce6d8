"""Proofs that an hour's cold copy equals warm's, carried from tick to tick by the sensors while
neither side moved: an hour proven is not read from cold again until it changed or its proof
is PROOF_HOURS old."""

from datetime import datetime

from pyiceberg.table import Table

from cold_assets.offload.bookkeeping import ranges_changed_since, snapshot_id
from cold_assets.partitions import hour_of
from cold_assets.tables import MirroredTable

# A proof is made again after this long, reading the cold files once more: a data file lost
# from storage after the proof (a lifecycle rule, a mistaken delete), which no snapshot shows,
# is found within this long, while warm still holds the hour.
PROOF_HOURS = 12


def fresh(proof: list, now: datetime) -> bool:
    """A proof ([snapshot id, when, ...]) made less than PROOF_HOURS before `now`."""
    return now.timestamp() - proof[1] < PROOF_HOURS * 3600


def still_proven(
    cold_table: Table, spec: MirroredTable, proofs: dict[str, list], keys: list[str], now: datetime
) -> dict[str, list]:
    """The hours of `keys` whose cold copy was proven equal to warm's (`proofs`: hour ->
    [snapshot id, when, as Unix seconds, and what the prover keeps beside]) less than
    PROOF_HOURS ago and is the same since: no offload rewrote them, nobody else changed the
    table, no compaction rewrote its files, and the snapshot is still on the current
    ancestry. What warm holds now is the prover's to compare (what it keeps beside). The
    proofs are carried to the current snapshot."""
    current = snapshot_id(cold_table)
    wanted = set(keys)
    recent = {
        hour: proof for hour, proof in proofs.items()
        if isinstance(proof, list) and len(proof) >= 2 and hour in wanted and fresh(proof, now)
    }
    kept: dict[str, list] = {}
    for since in {proof[0] for proof in recent.values()}:
        changed = ranges_changed_since(cold_table, spec, since)
        if changed is None or current is None:
            continue
        for hour, (at, when, *beside) in recent.items():
            if at == since and spec.offload_range(hour_of(hour))[0] not in changed:
                kept[hour] = [current, when, *beside]
    return kept
