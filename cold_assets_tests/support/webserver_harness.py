"""The Dagster webserver and daemon on loopback, driven as a person drives them: through the
GraphQL API the UI itself calls, and a headless Chromium (Debian's package) for what the
page shows. Used by test_webserver.py and by `make screenshots`."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cold_assets.settings import Settings
from cold_assets.tools.instance import embedded_dagster_home

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's own browser probe runs it: no sandbox as root, no background traffic.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1600,1100",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Webserver:
    url: str
    log_dir: Path

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            # A 500's body and the webserver's log say why; the status alone does not.
            log = (self.log_dir / "webserver.log").read_text(errors="replace")[-4000:]
            raise AssertionError(
                f"GraphQL answered {error.code}: {error.read()[:2000]!r}\nwebserver.log ends:\n{log}"
            ) from error
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def dismiss_first_visit_modal(self) -> None:
        self.graphql("mutation { setNuxSeen }")


@contextmanager
def webserver_and_daemon(settings: Settings, log_dir: Path) -> Iterator[Webserver]:
    """Starts dagster-webserver and dagster-daemon on the embedded instance of `settings`."""
    home = embedded_dagster_home(settings)
    env = {**os.environ, "DAGSTER_HOME": str(home), "COLD_HOME": str(settings.home)}
    port = _free_port()
    bin_dir = Path(sys.executable).parent
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = []
    try:
        for name, command in (
            ("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")]),
            ("webserver", [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")]),
        ):
            log = open(log_dir / f"{name}.log", "w")
            processes.append((subprocess.Popen(command, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT), log))
        server = Webserver(f"http://127.0.0.1:{port}", log_dir)
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/server_info", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline or any(p.poll() is not None for p, _ in processes):
                    raise RuntimeError(f"the webserver did not come up; see {log_dir}") from None
                time.sleep(1)
        _wait_for_code_location(server, deadline)
        yield server
    finally:
        for process, _log in processes:
            process.terminate()
        for process, log in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


def _wait_for_code_location(server: Webserver, deadline: float) -> None:
    """The webserver answers before its code location has loaded; a person waits for the
    location to show as loaded before launching anything, and so does the harness."""
    while True:
        entries = server.graphql(
            """
            query {
              workspaceOrError {
                ... on Workspace {
                  locationEntries {
                    name loadStatus
                    locationOrLoadError { __typename ... on PythonError { message } }
                  }
                }
              }
            }"""
        )["workspaceOrError"]["locationEntries"]
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            failed = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
            if failed:
                raise RuntimeError(f"the code location did not load: {failed}")
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the code location still loading after 180 s: {entries}")
        time.sleep(1)


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
    port = _free_port()
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
