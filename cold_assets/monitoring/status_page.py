"""One static HTML page of the tier's state (`cold-assets status --html`, and the exporter's
`/`): every (table, hour) of the window coloured by state, freshness per table, the last
nightly runs, and each federated view's cutover against warm's TTL horizon. It carries its
own style and no script or external asset: the machines it is read on often have no internet."""

from datetime import datetime, timedelta
from html import escape

from cold_assets.federation import view_name
from cold_assets.monitoring.hour_states import ALARMING, HourState
from cold_assets.monitoring.tier_status import TableStatus, TierStatus

COLOURS = {
    HourState.PROVEN: "#2e7d32",
    HourState.REPROCESSED: "#00897b",
    HourState.OPEN: "#81c784",
    HourState.COLD_ONLY: "#1565c0",
    HourState.MISMATCHED: "#c62828",
    HourState.REFUSED: "#6a1b9a",
    HourState.UNVERIFIED: "#f9a825",
    HourState.NEVER_OFFLOADED: "#bdbdbd",
}

STYLE = """
body { font: 14px system-ui, sans-serif; margin: 16px; color: #212121; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 20px 0 6px; }
.verdict { font-size: 16px; padding: 6px 10px; display: inline-block; border-radius: 4px; color: #fff; }
.ok { background: #2e7d32; } .bad { background: #c62828; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; text-align: right; } th { text-align: left; }
.heat td { padding: 0; } .heat th { font-weight: normal; padding-right: 8px; }
.cell { height: 16px; } .day { border-left: 1px solid #fff; }
.legend span { display: inline-block; margin-right: 14px; }
.swatch { width: 12px; height: 12px; display: inline-block; vertical-align: middle; margin-right: 4px; }
.late { color: #c62828; font-weight: bold; }
"""


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value is not None else "never"


def _age(now: datetime, value: datetime | None) -> str:
    if value is None:
        return "-"
    seconds = int((now - value).total_seconds())
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min" if seconds >= 3600 else f"{seconds // 60} min"


def _heat_row(table: TableStatus) -> str:
    cells = []
    for hour, state in table.hours.items():
        day = " day" if hour.endswith("-00:00") else ""
        cells.append(
            f'<td class="cell{day}" style="background:{COLOURS[state]}" title="{escape(table.spec.cold)} {hour}: {state.value}" '
            f'data-table="{escape(table.spec.cold)}" data-hour="{hour}" data-state="{state.value}"></td>'
        )
    return f"<tr><th>{escape(table.spec.cold)}</th>{''.join(cells)}</tr>"


# As the rules in docker/prometheus: ColdTableBehind, ColdSensorNotTicking, ColdNightlyJobDidNotRun.
BEHIND_ALARM = timedelta(hours=3)
SENSOR_SILENCE = {"ttl_guard": timedelta(hours=3)}  # the others: an hour
NIGHTLY_SILENCE = timedelta(hours=26)


def problems_of(status: TierStatus) -> list[str]:
    """What the verdict line names: each thing an operator must act on."""
    problems = []
    alarming = [(t.spec.cold, h, s) for t in status.tables for h, s in t.hours.items() if s in ALARMING]
    if alarming:
        problems.append(f"{len(alarming)} hours mismatched or refused")
    behind = [t.spec.cold for t in status.tables if t.watermark is not None and status.at - t.watermark > BEHIND_ALARM]
    if behind:
        problems.append(f"behind warm by over {BEHIND_ALARM.seconds // 3600} h: {', '.join(behind)}")
    failed = [r.job for r in status.nightly if r.status in ("FAILURE", "CANCELED")]
    if failed:
        problems.append(f"failed nightly: {', '.join(failed)}")
    if status.ttl_risk_hours:
        problems.append(f"{len(status.ttl_risk_hours)} warm hours at TTL risk")
    if status.federation_stuck:
        problems.append(f"views stuck: {', '.join(status.federation_stuck)}")
    unread = [t.spec.cold for t in status.tables if t.read_error]
    if unread:
        problems.append(f"catalog unreadable for {', '.join(unread)}")
    undelivered = sum(status.alerts_undelivered.values())
    if undelivered:
        problems.append(f"{undelivered} alerts undelivered")
    sensors = [
        name for name, health in status.sensors.items()
        if health.last_tick_failed or health.last_tick is None
        or status.at - health.last_tick > SENSOR_SILENCE.get(name, timedelta(hours=1))
    ]
    if sensors:
        problems.append(f"sensors failing or silent: {', '.join(sensors)}")
    late = [r.job for r in status.nightly if r.started is not None and status.at - r.started > NIGHTLY_SILENCE]
    if late:
        problems.append(f"nightly not started for over a day: {', '.join(late)}")
    return problems


def render_html(status: TierStatus, stale: str | None = None) -> str:
    """The page of `status`; `stale` says why that reading may be out of date (named first)."""
    alarming = [(t.spec.cold, h, s) for t in status.tables for h, s in t.hours.items() if s in ALARMING]
    problems = ([stale] if stale else []) + problems_of(status)
    healthy = not problems
    verdict = "All hours proven or in progress; nightly jobs and sensors fine" if healthy else "; ".join(problems)
    legend = "".join(
        f'<span><i class="swatch" style="background:{colour}"></i>{state.value.replace("_", " ")}</span>'
        for state, colour in COLOURS.items()
    )
    first, last = (status.window[0], status.window[-1]) if status.window else ("-", "-")
    freshness = "".join(
        f"<tr><th>{escape(t.spec.cold)}</th><td>{_when(t.watermark)}</td><td>{_age(status.at, t.watermark)}</td>{_shape_cells(t)}</tr>"
        for t in status.tables
    )
    nightly = "".join(
        f"<tr><th>{escape(r.job)}</th><td>{escape(r.status)}</td><td>{_when(r.started)}</td>"
        f"<td>{(r.ended - r.started).total_seconds():.0f} s</td></tr>" if r.started and r.ended else
        f"<tr><th>{escape(r.job)}</th><td>{escape(r.status)}</td><td>{_when(r.started)}</td><td>-</td></tr>"
        for r in status.nightly
    )
    maintenance = "".join(
        f"<tr><th>{escape(t.spec.cold)}</th>"
        f"<td>{_fact(t.compaction, 'data_files_before')} &rarr; {_fact(t.compaction, 'data_files_after')}</td>"
        f"<td>{_fact(t.expiry, 'snapshots_expired')}</td><td>{_fact(t.expiry, 'orphans_removed')}</td></tr>"
        for t in status.tables
    )
    cutovers = "".join(
        f"<tr><th>{escape(view_name(t.spec))}</th><td>{_when(t.cutover)}</td>"
        f"<td class=\"{'late' if t.cutover is None or t.cutover < status.warm_horizon else ''}\">"
        f"{_cutover_note(t.cutover, status.warm_horizon)}</td></tr>"
        for t in status.tables
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cold-assets: the cold tier</title>
<style>{STYLE}.cell {{ width: {max(2, min(8, 1400 // max(1, len(status.window))))}px; }}</style></head>
<body>
<h1>cold-assets: the cold tier at {_when(status.at)}</h1>
<p class="verdict {'ok' if healthy else 'bad'}" id="verdict">{escape(verdict)}</p>
{_alarming_list(alarming)}
<h2>Every hour, {first} .. {last}</h2>
<p class="legend">{legend}</p>
<table class="heat" id="heatmap">{''.join(_heat_row(t) for t in status.tables)}</table>
<h2>Freshness and shape</h2>
<table id="freshness"><tr><th>table</th><th>newest watermark</th><th>behind</th><th>snapshots</th><th>data files</th>
<th>mean file MiB</th><th>metadata.json KiB</th></tr>{freshness}</table>
<h2>Nightly jobs</h2>
<table id="nightly"><tr><th>job</th><th>last run</th><th>started</th><th>took</th></tr>{nightly}</table>
<table id="maintenance"><tr><th>table</th><th>files (last compaction)</th><th>snapshots expired</th>
<th>orphans removed</th></tr>{maintenance}</table>
<h2>Federated views against the warm TTL (horizon {_when(status.warm_horizon)})</h2>
<table id="cutovers"><tr><th>view</th><th>cold before</th><th></th></tr>{cutovers}</table>
<p>cold-assets {escape(status.versions.get('cold_assets', '?'))}, dagster {escape(status.versions.get('dagster', '?'))},
pyiceberg {escape(status.versions.get('pyiceberg', '?'))}, ClickHouse {escape(status.versions.get('clickhouse', '?'))}</p>
</body></html>
"""


def _shape_cells(table: TableStatus) -> str:
    shape = table.shape
    if shape is None:
        return f'<td colspan="4" class="late">catalog unreadable: {escape(table.read_error or "?")}</td>'
    mean = shape.data_bytes / shape.data_files / 2**20 if shape.data_files else 0.0
    return f"<td>{shape.snapshots}</td><td>{shape.data_files}</td><td>{mean:.1f}</td><td>{shape.metadata_file_bytes // 1024}</td>"


def _alarming_list(alarming: list[tuple[str, str, HourState]], shown: int = 20) -> str:
    if not alarming:
        return ""
    items = "".join(f"<li>{escape(table)} {hour}: {state.value}</li>" for table, hour, state in alarming[:shown])
    more = f"<li>... and {len(alarming) - shown} more</li>" if len(alarming) > shown else ""
    return f'<ul id="alarming">{items}{more}</ul>'


def _fact(maintenance: object, name: str) -> str:
    facts = getattr(maintenance, "facts", None)
    return f"{facts[name]:.0f}" if facts and name in facts else "-"


def _cutover_note(cutover: datetime | None, horizon: datetime) -> str:
    if cutover is None:
        return "not federated yet"
    if cutover < horizon:
        return f"behind the TTL by {_age(horizon, cutover)}: the view misses warm's expired hours"
    return f"{_age(cutover, horizon)} ahead of the TTL"
