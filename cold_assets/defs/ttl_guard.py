"""The TTL guard: late rows of hours older than the self-healing's lookback repaired while warm
still holds them (a slice of those hours a tick); warm hours near ClickHouse's TTL without a
proven cold copy alerted (each hour proven once, then kept proven while its cold copy stays
the same), and federated views whose cutover nears the TTL."""

import bisect
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    TimeWindowPartitionsDefinition,
    sensor,
)

from cold_assets.defs.alerts import Alerter, Outbox
from cold_assets.defs.healing import (
    SENSOR_CHILD_TIMEOUT_S,
    GoldProofs,
    RepairAttempts,
    Repairs,
    hour_keys,
    in_flight_ranges,
    sensor_warm,
)
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.defs.schedules import OffloadJob
from cold_assets.federation import current_cutovers, warm_first_row_since
from cold_assets.hours import HourPolicy
from cold_assets.offload.bookkeeping import snapshot_id
from cold_assets.parity.checksums import partitions_parity
from cold_assets.parity.proofs import still_proven
from cold_assets.settings import Settings
from cold_assets.tables import TABLES
from cold_assets.warm.embedded_lock import EmbeddedWarmTierBusy
from cold_assets.warm.isolated import on_warm
from cold_assets.warm.read import render, warm_now


def ttl_guard_sensor(
    job: OffloadJob, settings: Settings, partitions_def: TimeWindowPartitionsDefinition
) -> SensorDefinition:
    retention = timedelta(days=settings.warm_retention_days)
    margin = timedelta(days=settings.ttl_margin_days)
    lookback = timedelta(days=settings.heal_lookback_days)
    cutover_alert = timedelta(hours=settings.cutover_alert_hours)
    retry_wait = timedelta(seconds=settings.heal_retry_seconds)
    policy = HourPolicy.from_settings(settings)
    gold_proofs: GoldProofs = {}  # from tick to tick, in this process (Repairs.late_rows); rebound, never changed

    @sensor(
        name="ttl_guard",
        job=job,
        minimum_interval_seconds=3600,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Repairs late rows of hours older than the self-healing's lookback while warm still holds them "
        f"(looking at {LATE_ROWS_HOURS_PER_TICK} of those hours a tick, in turn); "
        f"alerts on warm hours close to ClickHouse's TTL ({margin.days} of {retention.days} days) whose cold copy is not "
        "proven equal, and on federated views whose cutover nears the TTL.",
    )
    def _ttl_guard(
        context: SensorEvaluationContext, clickhouse: ClickHouseResource, iceberg: IcebergResource
    ) -> list[RunRequest] | SkipReason:
        nonlocal gold_proofs
        state = json.loads(context.cursor) if context.cursor else {}
        if isinstance(state, list):  # the cursor of an earlier version: the hours alerted
            state = {"hours": state}
        try:
            look = on_warm(
                clickhouse.embedded, SENSOR_CHILD_TIMEOUT_S, look_at_old_hours,
                clickhouse, iceberg, partitions_def, state, retention, lookback, margin, cutover_alert, policy, gold_proofs,
            )
            gold_proofs = look.found.gold_proofs
        except EmbeddedWarmTierBusy as busy:
            return SkipReason(f"warm tier busy, trying again next tick: {busy}")
        state, now, found, at_risk, cutovers = look.state, look.now, look.found, look.at_risk, look.cutovers
        looked_at, repair_window, keys = look.looked_at, look.repair_window, look.keys
        alerter = Alerter.from_env()
        outbox = Outbox(state, alerter, context.log)
        alerted = set(state.get("hours", []))
        new = {hour: tables for hour, tables in at_risk.items() if hour not in alerted}
        if new:
            lines = "; ".join(f"{hour}: {', '.join(tables)}" for hour, tables in sorted(new.items()))
            outbox.send(
                f"TTL RISK: {len(new)} warm hours will be deleted by ClickHouse's {retention.days}-day TTL "
                f"within {(retention - margin).days} day(s) without a cold copy proven equal: {lines}"
            )
        # A view whose cutover stopped moving: once the TTL passes it, warm drops rows the view
        # reads from warm, and a gap opens. Alerted while warm holds such rows (not for a table
        # with no row there, as trades_rejects before its first reject: nothing to drop); it
        # recovers only once the cutover moved past the line, not when the TTL took the rows.
        behind = {view: cutover for view, cutover in cutovers.items() if cutover < look.close}
        losing = {
            view for view, cutover in behind.items()
            if (first := look.warm_read_from.get(view, cutover)) is not None and first < look.close
        }
        stuck_before = set(state.get("stuck", []))
        stuck = (stuck_before & set(behind)) | losing
        for view in sorted(losing - stuck_before):
            outbox.send(
                f"FEDERATION STUCK: the cutover of {view}_all is {behind[view]:%Y-%m-%d %H:%M} UTC, within "
                f"{cutover_alert.total_seconds() / 3600:.0f} h of the warm TTL horizon ({policy.warm_horizon(now):%Y-%m-%d %H:%M} UTC): "
                "once the TTL passes it, the view has a gap. See the daily_audit run's federate_views step."
            )
        for view in sorted(stuck_before - stuck):
            outbox.send(f"FEDERATION RECOVERED: the cutover of {view}_all is moving again.")
        found.alert_shrunk(state, outbox, set(looked_at), set(repair_window))
        covered = in_flight_ranges(context.instance, job.name, partitions_def, context.repository_def)
        attempts = RepairAttempts(state, context.instance, now, settings.heal_max_attempts, retry_wait, outbox, alerter)
        requests = found.requests(covered, "ttl-repair", attempts, repair_window, looked_at=looked_at)
        # Hours alerted are kept while they can still be at risk (in `keys`): the cursor does not grow with the years.
        # `at_risk`, `stuck` and the cutovers as found this tick, for the metrics exporter (monitoring/).
        context.update_cursor(json.dumps({
            **state, "hours": sorted((alerted | set(new)) & set(keys)), "stuck": sorted(stuck), "at_risk": sorted(at_risk),
            "cutovers": {table: cutover.isoformat() for table, cutover in cutovers.items()},
        }))
        return requests or SkipReason(
            f"{len(at_risk)} hours at risk, {len(new)} newly alerted; {len(stuck)} views' cutovers stuck; late rows looked "
            f"for in {len(looked_at)} of {len(repair_window)} hours"
            + (f"; {len(outbox.pending)} alerts undelivered, tried again next tick" if outbox.pending else "")
        )

    return _ttl_guard


@dataclass
class OldHoursLook:
    """What a TTL guard tick found in warm's old hours."""

    now: datetime  # warm's clock
    state: dict  # the cursor, its slice position and proofs moved on
    repair_window: list[str]  # the hours past the self-healing's lookback that warm still holds whole
    looked_at: list[str]  # this tick's slice of them
    found: Repairs  # late rows in that slice
    keys: list[str]  # the hours near the TTL
    at_risk: dict[str, list[str]]  # hour near the TTL -> its tables without a cold copy proven equal
    cutovers: dict[str, datetime]  # federated view's warm table -> its cutover
    close: datetime  # a cutover before this nears the TTL horizon (COLD_CUTOVER_ALERT_HOURS)
    # Of the views whose cutover is before `close`: the first warm row at or after the cutover (None: none).
    warm_read_from: dict[str, datetime | None]


def look_at_old_hours(
    clickhouse: ClickHouseResource, iceberg: IcebergResource, partitions_def: TimeWindowPartitionsDefinition,
    state: dict, retention: timedelta, lookback: timedelta, margin: timedelta, cutover_alert: timedelta, policy: HourPolicy,
    gold_proofs: GoldProofs | None = None,
) -> OldHoursLook:
    """The TTL guard's look at warm (in a child process on the embedded tier, see warm/isolated.py)."""
    at_risk: dict[str, list[str]] = {}
    found = Repairs()
    with sensor_warm(clickhouse).connect() as client:
        now = warm_now(client)
        current = now.replace(minute=0, second=0, microsecond=0)
        # From the oldest hour warm still holds whole: late rows of hours the self-healing
        # no longer looks at are repaired while there is time, a slice of them a tick...
        oldest = current - retention + timedelta(hours=1)
        catalog = iceberg.catalog()
        repair_window = hour_keys(partitions_def, oldest, current - lookback)
        looked_at = late_rows_slice(state, repair_window)
        found.late_rows(client, catalog, looked_at, now, policy, gold_proofs)
        # ...and hours about to be dropped without a proven copy are alerted.
        keys = hour_keys(partitions_def, oldest, current - margin)
        proven = state.get("proven", {})
        for table in TABLES:
            cold_table = catalog.load_table(table.cold_identifier)
            still = still_proven(cold_table, table, proven.get(table.cold, {}), keys, now)
            proven_at = snapshot_id(cold_table)  # the snapshot the parity below reads
            unproven = [key for key in keys if key not in still]
            for parity in partitions_parity(client, cold_table, table, unproven, True, now=now, policy=policy):
                if not parity.content_matches and parity.warm_rows:
                    at_risk.setdefault(parity.partition_key, []).append(
                        f"{table.cold} (warm {parity.warm_rows}, cold {parity.cold_rows})"
                    )
                elif parity.content_checked and parity.content_matches and proven_at is not None:
                    # (Counts alone, where ClickHouse cannot read cold, prove nothing to keep.)
                    still[parity.partition_key] = [proven_at, now.timestamp()]
            proven[table.cold] = still
        state["proven"] = proven
        cutovers = current_cutovers(client) if client.query(render("federation_cutover_exists")).result_rows[0][0] else {}
        close = policy.warm_horizon(now) + cutover_alert
        warm_read_from = {
            t.warm: warm_first_row_since(client, t, cutovers[t.warm]) for t in TABLES if cutovers.get(t.warm, close) < close
        }
    return OldHoursLook(now, state, repair_window, looked_at, found, keys, at_risk, cutovers, close, warm_read_from)


# Hours of the repair window a tick looks for late rows in: the window (23 days by default) is
# looked at whole every few ticks, and a tick at 200,000 trades an hour stays well inside
# Dagster's 60 s (cold-assets bench sensors).
LATE_ROWS_HOURS_PER_TICK = 6 * 24


def late_rows_slice(state: dict, window: list[str], hours: int = LATE_ROWS_HOURS_PER_TICK) -> list[str]:
    """The next `hours` of `window` to look for late rows in, from where the last tick stopped
    (`state["late_rows_from"]`), starting over at the window's oldest hour after its newest."""
    if not window:
        return []
    start = bisect.bisect_left(window, state.get("late_rows_from", ""))
    start = 0 if start >= len(window) else start
    chosen = window[start : start + hours]
    state["late_rows_from"] = window[start + hours] if start + hours < len(window) else window[0]
    return chosen
