"""Alerts: Slack-compatible webhook messages ({"text": ...}), or the log when none is set, and the
sensors that send them (failing parity checks, failed and recovered runs).

COLD_ALERT_WEBHOOK_URL is read from the environment and never logged (a Slack webhook URL is
a credential). COLD_DAGSTER_URL is the webserver's base URL, for links to runs."""

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass

from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunsFilter,
    RunStatusSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from cold_assets.defs.assets import cold_asset_key
from cold_assets.defs.check_history import follow_parity_checks, new_evaluations
from cold_assets.defs.checks import COMPACTION_PRESERVED_CONTENT
from cold_assets.defs.schedules import OffloadJob
from cold_assets.settings import env_str
from cold_assets.tables import TABLES

WEBHOOK_ENV = "COLD_ALERT_WEBHOOK_URL"
DAGSTER_URL_ENV = "COLD_DAGSTER_URL"
# A sensor tick has 60 s: an alert waits at most this long for the webhook, and after the
# first one it did not take, a tick tries no more (the others wait for the next tick).
WEBHOOK_TIMEOUT_S = 5


@dataclass(frozen=True)
class Alerter:
    webhook_url: str | None
    dagster_url: str | None

    @classmethod
    def from_env(cls) -> "Alerter":
        return cls(env_str(WEBHOOK_ENV), (env_str(DAGSTER_URL_ENV) or "").rstrip("/") or None)

    def run_link(self, run_id: str | None) -> str:
        if not run_id:
            return ""
        return f"{self.dagster_url}/runs/{run_id}" if self.dagster_url else f"run {run_id}"

    def send(self, text: str, log: logging.Logger | None = None) -> bool:
        """Posts the message; returns whether it was delivered. With no webhook configured the
        log line is the delivery. Never raises: an alert the webhook did not accept is logged,
        and the caller keeps it to try again (Outbox)."""
        log = log or logging.getLogger("cold_assets.defs.alerts")
        if not self.webhook_url:
            log.warning(f"alert (no {WEBHOOK_ENV} set): {text}")
            return True
        request = urllib.request.Request(
            self.webhook_url,
            data=json.dumps({"text": text}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                return 200 <= response.status < 300
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            log.error(f"alert could not be delivered to the webhook ({type(exc).__name__}): {text}")
            return False


class Outbox:
    """Alerts a sensor could not deliver, kept in its cursor (`state["undelivered"]`) and tried
    again, oldest first, before anything new on every tick: a webhook outage delays an alert,
    never loses it. The sensor's state moves on as if each alert had gone (it is queued)."""

    def __init__(self, state: dict, alerter: Alerter, log: logging.Logger):
        self.pending: list[str] = state.setdefault("undelivered", [])
        self._state, self._alerter, self._log = state, alerter, log
        # Oldest first, and no further than the first the webhook does not take: a webhook that
        # times out costs a tick one timeout, not one per waiting alert.
        while self.pending and self._deliver(self.pending[0]):
            self.pending.pop(0)

    def send(self, text: str) -> None:
        if self.pending or not self._deliver(text):  # keeps the order
            self.pending.append(text)

    def _deliver(self, text: str) -> bool:
        # Counted in the cursor (ALERTS_SENT), where the metrics exporter reads it.
        delivered = self._alerter.send(text, self._log)
        if delivered:
            self._state[ALERTS_SENT] = self._state.get(ALERTS_SENT, 0) + 1
        return delivered


ALERTS_SENT = "alerts_sent"


@sensor(
    name="parity_alerts",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="One alert per failing (table, check, hour), and per table whose compaction_preserved_content "
    "failed; one when it recovers.",
)
def parity_alerts(context: SensorEvaluationContext) -> SkipReason:
    state = json.loads(context.cursor) if context.cursor else {"failing": {}}
    alerter, instance, sent = Alerter.from_env(), context.instance, 0
    outbox = Outbox(state, alerter, context.log)
    for failing_key, check, differing, run_id in follow_parity_checks(instance, state):
        table, _, hour = failing_key.split("|")
        if differing is not None and failing_key not in state["failing"]:
            outbox.send(
                f"cold.{table} {check} FAILED for hour {hour}: warm {differing['warm_rows']} rows, "
                f"cold {differing['cold_rows']} rows. {alerter.run_link(run_id)}"
            )
            state["failing"][failing_key] = run_id
            sent += 1
        elif differing is None and failing_key in state["failing"]:
            outbox.send(f"cold.{table} {check} RECOVERED for hour {hour}. {alerter.run_link(run_id)}")
            del state["failing"][failing_key]
            sent += 1
    sent += _compaction_check_alerts(instance, state, outbox, alerter)
    # The run failure and recovery alerts have no cursor of ours: their undelivered ones wait
    # on their runs' tags, and are tried again here.
    run_alerts_waiting = retry_run_alerts(context.instance, alerter, context.log)
    context.update_cursor(json.dumps(state))
    return SkipReason(
        f"{sent} alerts sent; {len(state['failing'])} (table, check, hour) failing; "
        f"{len(outbox.pending) + run_alerts_waiting} alerts undelivered, tried again next tick"
    )


# Run tags of a failure or recovery alert the webhook did not take: the run page shows them,
# and parity_alerts tries them again every tick until delivered.
ALERT_TAG = "cold-assets/alert"
ALERT_TEXT_TAG = "cold-assets/alert-text"
UNDELIVERED, DELIVERED = "undelivered", "delivered"


def _send_run_alert(instance: DagsterInstance, run: DagsterRun, alerter: Alerter, text: str, log: logging.Logger) -> None:
    if not alerter.send(text, log):
        instance.add_run_tags(run.run_id, {ALERT_TAG: UNDELIVERED, ALERT_TEXT_TAG: text})


def retry_run_alerts(instance: DagsterInstance, alerter: Alerter, log: logging.Logger) -> int:
    """Tries the undelivered run alerts again, oldest first; returns how many still wait."""
    waiting = list(reversed(instance.get_runs(filters=RunsFilter(tags={ALERT_TAG: UNDELIVERED}), limit=100)))
    for n, run in enumerate(waiting):
        if not alerter.send(run.tags.get(ALERT_TEXT_TAG, f"run {run.run_id} alert"), log):
            return len(waiting) - n  # the webhook is down: the rest wait for the next tick
        instance.add_run_tags(run.run_id, {ALERT_TAG: DELIVERED})
    return 0


def _compaction_check_alerts(instance: DagsterInstance, state: dict, outbox: Outbox, alerter: Alerter) -> int:
    """compaction_preserved_content has no hours: one alert when a table's check fails with
    ERROR (from the nightly compaction or run alone), one when it passes again."""
    sent = 0
    for table in TABLES:
        key = AssetCheckKey(cold_asset_key(table), COMPACTION_PRESERVED_CONTENT)
        failing_key = f"{table.cold}|{COMPACTION_PRESERVED_CONTENT}"
        for record, evaluation in new_evaluations(instance, key, state):
            failed = not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
            if failed and failing_key not in state["failing"]:
                outbox.send(
                    f"cold.{table.cold} {COMPACTION_PRESERVED_CONTENT} FAILED: {evaluation.description} "
                    f"{alerter.run_link(record.run_id)}"
                )
                state["failing"][failing_key] = record.run_id
                sent += 1
            elif not failed and failing_key in state["failing"]:
                outbox.send(f"cold.{table.cold} {COMPACTION_PRESERVED_CONTENT} RECOVERED. {alerter.run_link(record.run_id)}")
                del state["failing"][failing_key]
                sent += 1
    return sent


PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def _hours_of(run: DagsterRun) -> str:
    return run.tags.get("dagster/partition") or (
        f"{run.tags.get('dagster/asset_partition_range_start')} .. {run.tags.get('dagster/asset_partition_range_end')}"
    )


def _previous_outcome(instance: DagsterInstance, run: DagsterRun) -> DagsterRunStatus | None:
    """How the previous run of the same job over the same hours ended, if one did."""
    tags = {k: v for k, v in run.tags.items() if k in PARTITION_TAGS}
    records = instance.get_run_records(filters=RunsFilter(job_name=run.job_name, tags=tags), limit=20)
    created = {r.dagster_run.run_id: r.create_timestamp for r in records}
    for record in records:  # newest first
        earlier = record.dagster_run
        if (
            earlier.run_id != run.run_id
            and earlier.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)
            and record.create_timestamp <= created.get(run.run_id, record.create_timestamp)
        ):
            return earlier.status
    return None


def _what(run: DagsterRun) -> tuple[str, str]:
    """How an alert names a run: the offload and its hours, or the nightly job."""
    if any(tag in run.tags for tag in PARTITION_TAGS):
        return "offload", f" for hour(s) {_hours_of(run)}"
    return run.job_name, ""


def run_failure_alerts(name: str, jobs: list, description: str) -> SensorDefinition:
    """One alert when runs of `jobs` fail (per job and hours), none while they keep failing."""

    @run_failure_sensor(name=name, monitored_jobs=jobs, default_status=DefaultSensorStatus.RUNNING, description=description)
    def _failure_alerts(context: RunFailureSensorContext) -> None:
        run = context.dagster_run
        if _previous_outcome(context.instance, run) is DagsterRunStatus.FAILURE:
            context.log.info(f"{''.join(_what(run))} failed again; already alerted")
            return
        steps = context.get_step_failure_events()
        failed = [e.step_key or "?" for e in steps]
        # What each step said (a refused replace names table, hour, warm and cold rows).
        errors = [e.step_failure_data.error.message.strip() for e in steps if e.step_failure_data.error]
        alerter, (what, scope) = Alerter.from_env(), _what(run)
        _send_run_alert(
            context.instance, run, alerter,
            f"{what} run FAILED{scope}: {'tables' if scope else 'steps'} {', '.join(failed) or 'unknown'}: "
            f"{context.failure_event.message} {' | '.join(errors)[:2000]} {alerter.run_link(run.run_id)}",
            context.log,
        )

    return _failure_alerts


def run_recovery_alerts(name: str, jobs: list, description: str) -> SensorDefinition:
    """One message when runs of `jobs` that had failed (same job and hours) succeed again."""

    @run_status_sensor(
        run_status=DagsterRunStatus.SUCCESS, name=name, monitored_jobs=jobs,
        default_status=DefaultSensorStatus.RUNNING, description=description,
    )
    def _recovery_alerts(context: RunStatusSensorContext) -> None:
        run = context.dagster_run
        if _previous_outcome(context.instance, run) is DagsterRunStatus.FAILURE:
            alerter, (what, scope) = Alerter.from_env(), _what(run)
            _send_run_alert(context.instance, run, alerter, f"{what} RECOVERED{scope}. {alerter.run_link(run.run_id)}", context.log)

    return _recovery_alerts


def offload_failure_alerts(job: OffloadJob) -> SensorDefinition:
    return run_failure_alerts(
        "offload_failure_alerts", [job], "One alert when the offload of some hours fails, none while it keeps failing."
    )


def offload_recovery_alerts(job: OffloadJob) -> SensorDefinition:
    return run_recovery_alerts(
        "offload_recovery_alerts", [job], "One message when the offload of hours that had failed succeeds again."
    )


def nightly_failure_alerts(jobs: list) -> SensorDefinition:
    return run_failure_alerts(
        "nightly_failure_alerts", jobs,
        "One alert when a nightly job (compaction, expiry and orphans, audit) fails, none while it keeps failing.",
    )


def nightly_recovery_alerts(jobs: list) -> SensorDefinition:
    return run_recovery_alerts(
        "nightly_recovery_alerts", jobs, "One message when a nightly job that had failed succeeds again."
    )
