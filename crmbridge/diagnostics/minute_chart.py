"""An inline SVG line chart of operations per minute: created, synced, retried, dead.

Rendered on the server (no JavaScript, no CDN: the admin works offline), with
a y axis of round numbers and gridlines, an x axis of UTC times every 10
minutes, and a legend with each series' total. Only numbers and fixed labels
go into the markup.

* ``created``: entries added to the operations stream that minute (counted
  from their IDs, which carry the time; see ``created_per_minute``);
* ``synced``, ``retried``, ``dead``: the worker's per-minute counters
  (``telemetry.read_minutes``: processed, retried, dead_lettered).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import redis
from django.utils.safestring import SafeString, mark_safe

from crmbridge.redis_io import streams

# (key in the rows, legend label, colour)
SERIES = (
    ("created", "created", "#1565c0"),
    ("processed", "synced", "#2e7d32"),
    ("retried", "retried", "#ef6c00"),
    ("dead_lettered", "dead", "#c62828"),
)
WIDTH, HEIGHT = 1200, 250
LEFT, RIGHT, TOP, BOTTOM = 52, 14, 30, 42
# Counting "created" reads entry IDs of the last hour; past this many the count is a lower bound.
CREATED_COUNT_LIMIT = 5000


def created_per_minute(client: redis.Redis, minutes: list[int], limit: int = CREATED_COUNT_LIMIT) -> tuple[dict, bool]:
    """Entries added to the operations stream per minute (``minutes``: Unix seconds of each minute's start).

    One bounded ``XRANGE`` from the first minute on; returns ``(counts, capped)``
    where ``capped`` means more than ``limit`` entries came in and the counts
    of the latest minutes are missing.
    """
    if not minutes:
        return {}, False
    start_ms = minutes[0] * 1000
    entries = client.xrange(streams.operations_stream(), min=f"{start_ms}-0", max="+", count=limit)
    counts = dict.fromkeys(minutes, 0)
    for entry_id, _fields in entries:
        ms = streams.id_milliseconds(entry_id)
        if ms is not None:
            minute = ms // 60000 * 60
            if minute in counts:
                counts[minute] += 1
    return counts, len(entries) >= limit


def chart_rows(client: redis.Redis, rows: list[dict]) -> tuple[list[dict], bool]:
    """``telemetry.read_minutes`` rows with ``created`` added; and whether ``created`` was capped."""
    counts, capped = created_per_minute(client, [row["minute"] for row in rows])
    return [{**row, "created": counts.get(row["minute"], 0)} for row in rows], capped


def nice_ceiling(value: int) -> int:
    """The axis top: 4 x a round step (1, 2, 2.5 or 5 x 10^k, whole) so that the four gridlines are whole numbers."""
    wanted = max(1, math.ceil(value / 4))
    power = 1
    while True:
        for step in (1, 2, 2.5, 5):
            tick = step * power
            if tick >= wanted and tick == int(tick):
                return 4 * int(tick)
        power *= 10


def _hhmm(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, tz=UTC).strftime("%H:%M")


def minute_chart_svg(rows: list[dict], *, capped: bool = False) -> SafeString:
    """``rows`` oldest first, each with ``minute`` (Unix s) and the four series' counts (missing = 0)."""
    rows = rows or [{"minute": int(time.time() // 60 * 60)}]
    top = nice_ceiling(max([0, *(int(row.get(key, 0)) for row in rows for key, _, _ in SERIES)]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(rows) - 1)

    def x(i: int) -> float:
        return LEFT + i * step

    def y(value: float) -> float:
        return TOP + plot_h - value / top * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" class="bitrix-chart" '
        f'preserveAspectRatio="xMidYMid meet" font-family="sans-serif" font-size="11">',
        f"<title>Operations per minute, last {len(rows)} minutes (UTC)</title>",
    ]
    for tick in range(5):  # y gridlines and labels: 0, 1/4, ... top
        value = top * tick / 4
        label = f"{value:g}"
        cls = "bitrix-chart-axis" if tick == 0 else "bitrix-chart-grid"
        stroke = "#555" if tick == 0 else "#ddd"
        parts.append(
            f'<line class="{cls}" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="{stroke}"/>'
        )
        parts.append(f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" fill="#444">{label}</text>')
    parts.append(
        f'<line class="bitrix-chart-axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#555"/>'
    )
    parts.append(
        f'<text x="12" y="{TOP + plot_h / 2:.0f}" transform="rotate(-90 12 {TOP + plot_h / 2:.0f})" '
        f'text-anchor="middle" fill="#444">per minute</text>'
    )
    for i, row in enumerate(rows):  # x ticks every 10 minutes, labelled in UTC
        last = i == len(rows) - 1
        if last or (row["minute"] % 600 == 0 and i < len(rows) - 5):  # no 10-minute label crowding the last
            parts.append(
                f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}" stroke="#555"/>'
            )
            anchor = "end" if last else "middle"
            parts.append(
                f'<text class="bitrix-chart-xlabel" x="{x(i):.1f}" y="{TOP + plot_h + 16}" '
                f'text-anchor="{anchor}" fill="#444">{_hhmm(row["minute"])}</text>'
            )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle" fill="#444">time (UTC)</text>'
    )
    legend_x = LEFT
    for key, label, colour in SERIES:
        points = " ".join(f"{x(i):.1f},{y(int(row.get(key, 0))):.1f}" for i, row in enumerate(rows))
        # "created" is drawn wide and pale under the others: when everything created is synced at once,
        # the two lines coincide and both stay visible.
        width, opacity = ("5", ".35") if key == "created" else ("2", "1")
        parts.append(
            f'<polyline class="bitrix-series-{label}" fill="none" stroke="{colour}" stroke-width="{width}" '
            f'stroke-opacity="{opacity}" stroke-linejoin="round" points="{points}"/>'
        )
        total = sum(int(row.get(key, 0)) for row in rows)
        shown = f"{total}+" if capped and key == "created" else str(total)
        parts.append(
            f'<g class="bitrix-chart-legend"><rect x="{legend_x}" y="8" width="14" height="{width}" fill="{colour}" '
            f'fill-opacity="{opacity}"/>'
            f'<text x="{legend_x + 19}" y="14" fill="#222">{label}: {shown}</text></g>'
        )
        legend_x += 130
    parts.append("</svg>")
    return mark_safe("".join(parts))  # numbers and fixed labels only
