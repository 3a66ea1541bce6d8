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
        """Posts the message; returns whether a webhook accepted it. Never raises: an alert
        that cannot be delivered is logged, and the sensor goes on."""
        log = log or logging.getLogger("cold_assets.defs.alerts")
        if not self.webhook_url:
            log.warning(f"alert (no {WEBHOOK_ENV} set): {text}")
            return False
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
