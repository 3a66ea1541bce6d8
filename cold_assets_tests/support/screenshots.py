"""`make screenshots`: the Dagster webserver on the demo's COLD_HOME, pages rendered by
headless Chromium into $COLD_HOME/screenshots/*.png for people to look at."""

import sys

from cold_assets.settings import Settings
from cold_assets_tests.support.webserver_harness import render_page, webserver_and_daemon

PAGES = {
    "asset_graph": "/asset-groups/cold",
    "bronze_partitions": "/assets/cold/bronze_trades?view=partitions",
    "bronze_checks": "/assets/cold/bronze_trades?view=checks",
    "bronze_events": "/assets/cold/bronze_trades?view=events",
    "runs": "/runs",
    "schedules": "/automation",
}


def main() -> int:
    settings = Settings.from_env()
    out = settings.home / "screenshots"
    with webserver_and_daemon(settings, out / "logs") as server:
        server.dismiss_first_visit_modal()
        for name, path in PAGES.items():
            render_page(server.url + path, out / f"{name}.png")
            print(out / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
