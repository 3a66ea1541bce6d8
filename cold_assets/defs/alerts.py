"""Alerts: Slack-compatible webhook messages ({"text": ...}), or the log when none is set.

COLD_ALERT_WEBHOOK_URL is read from the environment and never logged (a Slack webhook URL is
a credential). COLD_DAGSTER_URL is the webserver's base URL, for links to runs."""

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass

from cold_assets.settings import env_str

WEBHOOK_ENV = "COLD_ALERT_WEBHOOK_URL"
DAGSTER_URL_ENV = "COLD_DAGSTER_URL"


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
            with urllib.request.urlopen(request, timeout=10) as response:
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
        self._alerter, self._log = alerter, log
        self.pending[:] = [text for text in self.pending if not alerter.send(text, log)]

    def send(self, text: str) -> None:
        if self.pending or not self._alerter.send(text, self._log):  # keeps the order
            self.pending.append(text)
