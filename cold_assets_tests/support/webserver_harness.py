"""The Dagster webserver and daemon on loopback, driven as a person drives them: through the
GraphQL API the UI itself calls, and a headless Chromium (Debian's package) for what the
page shows. Used by test_webserver.py and by `make screenshots`."""

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cold_assets.settings import Settings
from cold_assets.tools.instance import embedded_dagster_home
from cold_assets.tools.webserver import ROOT, Webserver, free_port, running_webserver

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's own browser probe runs it: no sandbox as root, no background traffic.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1600,1100",
]


@contextmanager
def webserver_and_daemon(settings: Settings, log_dir: Path) -> Iterator[Webserver]:
    """Starts dagster-webserver and dagster-daemon on the embedded instance of `settings`."""
    env = {**os.environ, "COLD_HOME": str(settings.home)}
    with running_webserver(embedded_dagster_home(settings), env, log_dir, daemon=True) as server:
        yield server


def launch_backfill(server: Webserver, asset_paths: list[list[str]], partitions: list[str]) -> str:
    """The mutation the UI sends from "Materialize selected" > backfill."""
    data = server.graphql(
        """
        mutation($params: LaunchBackfillParams!) {
          launchPartitionBackfill(backfillParams: $params) {
            __typename
            ... on LaunchBackfillSuccess { backfillId }
            ... on PythonError { message }
            ... on InvalidStepError { invalidStepKey }
            ... on InvalidOutputError { stepKey invalidOutputName }
            ... on PartitionSetNotFoundError { message }
            ... on UnauthorizedError { message }
          }
        }""",
        {"params": {"assetSelection": [{"path": p} for p in asset_paths], "partitionNames": partitions, "fromFailure": False}},
    )["launchPartitionBackfill"]
    if data["__typename"] != "LaunchBackfillSuccess":
        raise AssertionError(f"backfill not launched: {data}")
    return data["backfillId"]


def wait_for_backfill(server: Webserver, backfill_id: str, timeout_s: float = 600) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        backfill = server.graphql(
            """
            query($id: String!) {
              partitionBackfillOrError(backfillId: $id) {
                ... on PartitionBackfill { status numPartitions runs(limit: 50) { runId status } }
              }
            }""",
            {"id": backfill_id},
        )["partitionBackfillOrError"]
        if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
            return backfill
        if time.monotonic() > deadline:
            raise AssertionError(f"backfill {backfill_id} still {backfill['status']} after {timeout_s} s")
        time.sleep(2)


def materializations(server: Webserver, asset_path: list[str], partitions: list[str]) -> dict[str, dict]:
    """Partition -> {label: value} of the latest materialization, as the asset page reads it,
    and under "run_id" the run that made it."""
    data = server.graphql(
        """
        query($key: AssetKeyInput!, $partitions: [String!]) {
          assetOrError(assetKey: $key) {
            ... on Asset {
              assetMaterializations(partitions: $partitions) {
                partition
                runId
                metadataEntries {
                  label
                  ... on IntMetadataEntry { intValue }
                  ... on FloatMetadataEntry { floatValue }
                  ... on TextMetadataEntry { text }
                  ... on JsonMetadataEntry { jsonString }
                  ... on TimestampMetadataEntry { timestamp }
                }
              }
            }
          }
        }""",
        {"key": {"path": asset_path}, "partitions": partitions},
    )["assetOrError"]["assetMaterializations"]
    latest: dict[str, dict] = {}
    for event in data:  # newest first
        if event["partition"] in latest:
            continue
        values = {"run_id": event["runId"]}
        for entry in event["metadataEntries"]:
            value = next((entry[k] for k in ("intValue", "floatValue", "text", "jsonString", "timestamp") if k in entry), None)
            values[entry["label"]] = json.loads(value) if "jsonString" in entry else value
        latest[event["partition"]] = values
    return latest


def run_tags(server: Webserver, run_id: str) -> dict[str, str]:
    data = server.graphql(
        "query($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }", {"id": run_id}
    )["runOrError"]
    return {tag["key"]: tag["value"] for tag in data["tags"]}


def check_statuses(server: Webserver, asset_path: list[str], timeout_s: float = 180) -> dict[str, str]:
    """Check name -> status of its execution for the asset's latest materialization, once none
    is still running: the daemon's schedule and sensors may have started a run meanwhile."""
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = _check_statuses(server, asset_path)
        if not any(status in ("IN_PROGRESS", "PLANNED") for status in statuses.values()) or time.monotonic() > deadline:
            return statuses
        time.sleep(2)


def _check_statuses(server: Webserver, asset_path: list[str]) -> dict[str, str]:
    data = server.graphql(
        """
        query($key: AssetKeyInput!) {
          assetNodeOrError(assetKey: $key) {
            ... on AssetNode {
              assetChecksOrError {
                ... on AssetChecks { checks { name executionForLatestMaterialization { status } } }
              }
            }
          }
        }""",
        {"key": {"path": asset_path}},
    )["assetNodeOrError"]["assetChecksOrError"]["checks"]
    return {c["name"]: (c["executionForLatestMaterialization"] or {}).get("status") for c in data}


def render_page(url: str, screenshot: Path) -> str:
    """Renders `url` in headless Chromium: writes a PNG and returns the page's text (DOM)."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    profile = screenshot.parent / ".chromium-profile"
    common = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000"]
    subprocess.run([*common, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=180)
    dom = subprocess.run([*common, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=180).stdout
    shutil.rmtree(profile, ignore_errors=True)
    return dom


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@contextmanager
def auth_proxy(upstream: str, user: str, password: str, work: Path) -> Iterator[str]:
    """The stack's authenticating proxy (docker/nginx) run by Debian's nginx on loopback: its
    config template and its htpasswd script, as the nginx image runs them."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    htpasswd = work / "htpasswd"
    env = {**os.environ, "DAGSTER_UI_USER": user, "DAGSTER_UI_PASSWORD": password, "HTPASSWD_FILE": str(htpasswd)}
    subprocess.run(["sh", str(ROOT / "docker" / "nginx" / "40-htpasswd.sh")], env=env, check=True)
    site = (ROOT / "docker" / "nginx" / "default.conf.template").read_text()
    for name, value in {"AUTH_PROXY_LISTEN": f"127.0.0.1:{port}", "DAGSTER_UPSTREAM": upstream, "HTPASSWD_FILE": str(htpasswd)}.items():
        site = site.replace("${" + name + "}", value)
    (work / "site.conf").write_text(site)
    temp = {name: work / name for name in ("client", "proxy", "fastcgi", "uwsgi", "scgi")}
    (work / "nginx.conf").write_text(
        # Workers as root here (the test's files are root's); the image runs them as nginx.
        f"user root;\npid {work / 'nginx.pid'};\nerror_log {work / 'error.log'};\nevents {{}}\nhttp {{\n"
        f"  access_log off;\n"
        + "".join(
            f"  {name}_temp_path {path};\n"
            for name, path in (("client_body", temp["client"]), *((n, temp[n]) for n in ("proxy", "fastcgi", "uwsgi", "scgi")))
        )
        + f"  include {work / 'site.conf'};\n}}\n"
    )
    process = subprocess.Popen([NGINX, "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    error_log = work / "error.log"
                    raise RuntimeError(f"nginx did not start: {error_log.read_text() if error_log.exists() else ''}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
