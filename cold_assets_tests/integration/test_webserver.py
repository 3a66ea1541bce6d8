"""The webserver as a person uses it: a backfill launched through its GraphQL API (the call the
UI makes) runs on the daemon; the API then shows the partitions, their metadata and the
check results; and Chromium renders the asset page with its partitions and checks."""

import re

import pytest

from cold_assets.cold.ddl import ensure_cold_tables
from cold_assets.tables import TABLES
from cold_assets_tests.support.offload_helpers import KEYS, feed
from cold_assets_tests.support.webserver_harness import (
    auth_proxy,
    check_statuses,
    launch_backfill,
    materializations,
    render_page,
    run_tags,
    wait_for_backfill,
    webserver_and_daemon,
)

COLD_PATHS = [["cold", t.cold] for t in TABLES]


@pytest.mark.runs_for(82)
def test_a_backfill_from_the_webserver_materializes_checks_and_shows_on_the_asset_page(settings, warm, cold, tmp_path):
    ensure_cold_tables(cold.catalog())
    feed(warm, hours=len(KEYS), trades_per_hour=300)
    with warm.connect() as client:
        warm_rows = {
            key: n
            for key, n in client.query(
                "SELECT formatDateTime(toStartOfHour(exchange_ts), '%Y-%m-%d-%H:00', 'UTC'), count() FROM bronze_trades GROUP BY 1"
            ).result_rows
        }

    with webserver_and_daemon(settings, tmp_path / "logs") as server:
        server.dismiss_first_visit_modal()
        backfill = wait_for_backfill(server, launch_backfill(server, COLD_PATHS, KEYS))
        assert backfill["status"] == "COMPLETED_SUCCESS", backfill
        assert len(backfill["runs"]) == 1  # BackfillPolicy: three hours of nine assets in one run

        facts = materializations(server, ["cold", "bronze_trades"], KEYS)
        assert set(facts) == set(KEYS)
        for key in KEYS:
            hour = facts[key]["offload"][key]
            assert set(facts[key]["offload"]) == {key}  # each hour's event carries that hour only
            assert facts[key]["dagster/row_count"] == facts[key]["cold_rows"] == warm_rows[key]  # typed, plottable
            assert facts[key]["watermark"] and facts[key]["mode"] == hour["mode"]
            assert hour["cold_rows"] == hour["warm_rows"] == warm_rows[key] > 0
            assert hour["watermark"]
            # The daemon also runs the self-healing sensor, which counts an hour not offloaded
            # yet as missing and replaces it: "unchanged" when it got there first, "replace"
            # when its run came after the backfill's. Either way, written once (rows above).
            tags = run_tags(server, facts[key]["run_id"])
            if hour["mode"] == "replace":
                assert tags.get("dagster/sensor_name") == "self_healing", tags
            else:
                assert hour["mode"] in ("append", "unchanged") and "dagster/backfill" in tags, tags
        statuses = check_statuses(server, ["cold", "bronze_trades"])
        assert statuses["row_count_parity"] == statuses["content_parity"] == "SUCCEEDED"
        # A backfill from the UI selects every check of its assets. The maintenance's check
        # follows the asset's output, which the offload leaves to its per-hour
        # materializations: it is skipped (the nightly compaction records it).
        assert statuses["compaction_preserved_content"] in ("SKIPPED", "SUCCEEDED", None)

        page = render_page(f"{server.url}/assets/cold/bronze_trades?view=partitions", tmp_path / "bronze_partitions.png")
        text = re.sub(r"<[^>]+>", " ", page)
        assert "bronze_trades" in text
        materialized = re.search(r"Materialized \((\d+)\)", text)
        assert materialized and int(materialized.group(1)) >= len(KEYS)  # the schedule may add the current hour
        checks_page = render_page(f"{server.url}/assets/cold/bronze_trades?view=checks", tmp_path / "bronze_checks.png")
        checks_text = re.sub(r"<[^>]+>", " ", checks_page)
        assert "row_count_parity" in checks_text and "content_parity" in checks_text
        assert (tmp_path / "bronze_partitions.png").stat().st_size > 10_000


def _status(url: str, auth: tuple[str, str] | None = None, body: bytes | None = None) -> tuple[int, bytes]:
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_webserver_is_reached_only_through_basic_authentication(settings, warm, cold, tmp_path):
    """The stack publishes Dagster only behind docker/nginx: without credentials 401, with
    them the GraphQL API answers (Debian's nginx stands in for the image's)."""
    import json

    query = json.dumps({"query": "{ version }"}).encode()
    with (
        webserver_and_daemon(settings, tmp_path / "logs") as server,
        auth_proxy(server.url, "ops", "s3cret pass", tmp_path / "nginx") as proxy,
    ):
        assert _status(f"{proxy}/graphql", body=query)[0] == 401
        assert _status(f"{proxy}/graphql", ("ops", "wrong"), query)[0] == 401
        status, answer = _status(f"{proxy}/graphql", ("ops", "s3cret pass"), query)
        assert status == 200 and json.loads(answer)["data"]["version"]
    assert "s3cret" not in (tmp_path / "nginx" / "htpasswd").read_text()  # stored hashed
