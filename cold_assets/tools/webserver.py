"""The Dagster webserver (and daemon) on loopback, driven through the GraphQL API the UI itself
calls: used by `bench steady` for the first materialization a person launches, and by the
tests' webserver harness (cold_assets_tests/support/webserver_harness.py)."""

import contextlib
import json
import os
import signal
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

import yaml

ROOT = Path(__file__).resolve().parents[2]
LOCATION = "cold_assets"  # workspace.yaml's location_name
# The webserver answers before its code location has loaded; a person waits for it too.
STARTUP_TIMEOUT_S = 180


def free_port() -> int:
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
            raise RuntimeError(f"GraphQL answered {error.code}: {error.read()[:2000]!r}\nwebserver.log ends:\n{self.log_tail()}") from error
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def log_tail(self, chars: int = 4000) -> str:
        log = self.log_dir / "webserver.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"

    def dismiss_first_visit_modal(self) -> None:
        self.graphql("mutation { setNuxSeen }")


@contextmanager
def running_webserver(dagster_home: Path, env: dict[str, str], log_dir: Path, daemon: bool) -> Iterator[Webserver]:
    """dagster-webserver (and dagster-daemon if `daemon`) on the instance in `dagster_home`,
    loading workspace.yaml with `env`; yields once the code location has loaded."""
    env = {**env, "DAGSTER_HOME": str(dagster_home)}
    port = free_port()
    bin_dir = Path(sys.executable).parent
    log_dir.mkdir(parents=True, exist_ok=True)
    commands = [("webserver", [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")])]
    if daemon:
        commands.insert(0, ("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")]))
    processes = []
    try:
        for name, command in commands:
            log = open(log_dir / f"{name}.log", "w")
            # A session of its own: the code server and the runs it launches are its children,
            # stopped with it.
            process = subprocess.Popen(command, env=env, cwd=dagster_home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            processes.append((process, log))
        server = Webserver(f"http://127.0.0.1:{port}", log_dir)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
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
            _signal_group(process, signal.SIGTERM)
        for process, log in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(10)
            log.close()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)




def _wait_for_code_location(server: Webserver, deadline: float) -> None:
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
            raise RuntimeError(f"the code location still loading after {STARTUP_TIMEOUT_S} s: {entries}")
        time.sleep(1)


def launching_at_once(instance_home: Path, into: Path) -> Path:
    """A DAGSTER_HOME on the storage of the instance in `instance_home` whose runs launch when
    submitted (Dagster's DefaultRunCoordinator) instead of waiting for the daemon's dequeue,
    which polls: for timing a launch without the daemon, its schedules and its sensors."""
    config = yaml.safe_load((instance_home / "dagster.yaml").read_text()) or {}
    if "storage" not in config and "run_storage" not in config:
        # The instance keeps its SQLite storage in its own home (the embedded default's).
        config["storage"] = {"sqlite": {"base_dir": str(instance_home)}}
    config["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}
    into.mkdir(parents=True, exist_ok=True)
    (into / "dagster.yaml").write_text(yaml.safe_dump(config))
    return into


def launch_materialization(server: Webserver, asset_paths: list[list[str]], partition: str) -> str:
    """What "Materialize selected" on one partition sends: a run of the implicit asset job for
    those assets (their checks with them), tagged with the partition. Returns the run id."""
    data = server.graphql(
        """
        mutation($params: ExecutionParams!) {
          launchPipelineExecution(executionParams: $params) {
            __typename
            ... on LaunchRunSuccess { run { runId } }
            ... on PythonError { message }
            ... on InvalidSubsetError { message }
            ... on RunConfigValidationInvalid { errors { message } }
            ... on UnauthorizedError { message }
          }
        }""",
        {
            "params": {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": "__repository__",
                    "pipelineName": "__ASSET_JOB",
                    "assetSelection": [{"path": p} for p in asset_paths],
                },
                "mode": "default",
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
            }
        },
    )["launchPipelineExecution"]
    if data["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"run not launched: {data}")
    return data["run"]["runId"]


def wait_for_run(server: Webserver, run_id: str, timeout_s: float = 600) -> str:
    """The run's final status, polled as the run page does."""
    deadline = time.monotonic() + timeout_s
    while True:
        query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
        status = server.graphql(query, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} still {status} after {timeout_s} s")
        time.sleep(0.2)

