"""The TTL guard: late rows of hours older than the self-healing's lookback repaired while warm
still holds them; warm hours near ClickHouse's TTL without a proven cold copy alerted, and
federated views whose cutover nears the TTL."""

import json
from datetime import timedelta

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
from cold_assets.defs.healing import RepairAttempts, Repairs, hour_keys, in_flight_partitions, sensor_warm
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.defs.schedules import OffloadJob
from cold_assets.federation import current_cutovers
from cold_assets.hours import HourPolicy
from cold_assets.parity.checksums import partitions_parity
from cold_assets.settings import Settings
from cold_assets.tables import TABLES
from cold_assets.warm.embedded_lock import EmbeddedWarmTierBusy
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

    @sensor(
        name="ttl_guard",
        job=job,
        minimum_interval_seconds=3600,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Repairs late rows of hours older than the self-healing's lookback while warm still holds them; "
        f"alerts on warm hours close to ClickHouse's TTL ({margin.days} of {retention.days} days) whose cold copy is not "
        "proven equal, and on federated views whose cutover nears the TTL.",
    )
    def _ttl_guard(
        context: SensorEvaluationContext, clickhouse: ClickHouseResource, iceberg: IcebergResource
    ) -> list[RunRequest] | SkipReason:
        at_risk: dict[str, list[str]] = {}
        found = Repairs()
        try:
            with sensor_warm(clickhouse).connect() as client:
                now = warm_now(client)
                current = now.replace(minute=0, second=0, microsecond=0)
                # From the oldest hour warm still holds whole: late rows of hours the self-healing
                # no longer looks at are repaired while there is time...
                oldest = current - retention + timedelta(hours=1)
                catalog = iceberg.catalog()
                repair_window = hour_keys(partitions_def, oldest, current - lookback)
                found.late_rows(client, catalog, repair_window, now, policy)
                # ...and hours about to be dropped without a proven copy are alerted.
                keys = hour_keys(partitions_def, oldest, current - margin)
                for table in TABLES:
                    cold_table = catalog.load_table(table.cold_identifier)
                    for parity in partitions_parity(client, cold_table, table, keys, True, now=now, policy=policy):
                        if not parity.content_matches and parity.warm_rows:
                            at_risk.setdefault(parity.partition_key, []).append(
                                f"{table.cold} (warm {parity.warm_rows}, cold {parity.cold_rows})"
                            )
                cutovers = current_cutovers(client) if client.query(render("federation_cutover_exists")).result_rows[0][0] else {}
        except EmbeddedWarmTierBusy as busy:
            return SkipReason(f"warm tier busy, trying again next tick: {busy}")
        state = json.loads(context.cursor) if context.cursor else {}
        if isinstance(state, list):  # the cursor of an earlier version: the hours alerted
            state = {"hours": state}
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
        # reads from warm, and a gap opens.
        close = policy.warm_horizon(now) + cutover_alert
        stuck = {view: cutover for view, cutover in cutovers.items() if cutover < close}
        stuck_before = set(state.get("stuck", []))
        for view in sorted(set(stuck) - stuck_before):
            outbox.send(
                f"FEDERATION STUCK: the cutover of {view}_all is {stuck[view]:%Y-%m-%d %H:%M} UTC, within "
                f"{cutover_alert.total_seconds() / 3600:.0f} h of the warm TTL horizon ({policy.warm_horizon(now):%Y-%m-%d %H:%M} UTC): "
                "once the TTL passes it, the view has a gap. See the daily_audit run's federate_views step."
            )
        for view in sorted(stuck_before - set(stuck)):
            outbox.send(f"FEDERATION RECOVERED: the cutover of {view}_all is moving again.")
        found.alert_shrunk(state, outbox)
        covered = in_flight_partitions(context.instance, job.name, partitions_def, context.repository_def)
        attempts = RepairAttempts(state, context.instance, now, settings.heal_max_attempts, retry_wait, outbox, alerter)
        requests = found.requests(covered, "ttl-repair", attempts, repair_window)
        context.update_cursor(json.dumps({**state, "hours": sorted(alerted | set(new)), "stuck": sorted(stuck)}))
        return requests or SkipReason(
            f"{len(at_risk)} hours at risk, {len(new)} newly alerted; {len(stuck)} views' cutovers stuck"
            + (f"; {len(outbox.pending)} alerts undelivered, tried again next tick" if outbox.pending else "")
        )

    return _ttl_guard
