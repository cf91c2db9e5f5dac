"""An inline SVG line chart of processed / retried / dead-lettered per minute.

Rendered on the server (no JavaScript, no CDN: the admin works offline). Only
numbers and fixed labels go into the markup.
"""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

SERIES = (("processed", "#2e7d32"), ("retried", "#ef6c00"), ("dead_lettered", "#c62828"))
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 170, 40, 22, 10


def minute_chart_svg(rows: list[dict]) -> SafeString:
    """``rows`` as ``telemetry.read_minutes`` returns them (oldest first)."""
    peak = max([1, *(row[name] for row in rows for name, _ in SERIES)])
    plot_w, plot_h = WIDTH - PAD_LEFT - 10, HEIGHT - PAD_TOP - PAD_BOTTOM
    step = plot_w / max(1, len(rows) - 1)

    def point(i: int, value: int) -> str:
        return f"{PAD_LEFT + i * step:.1f},{PAD_TOP + plot_h - value / peak * plot_h:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="Operations per minute, last {len(rows)} minutes" class="bitrix-chart">',
        f'<rect x="{PAD_LEFT}" y="{PAD_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>',
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 8}" text-anchor="end" font-size="10">{peak}</text>',
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + plot_h}" text-anchor="end" font-size="10">0</text>',
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 6}" font-size="10">-{len(rows)} min</text>',
        f'<text x="{WIDTH - 10}" y="{HEIGHT - 6}" text-anchor="end" font-size="10">now</text>',
    ]
    for index, (name, colour) in enumerate(SERIES):
        points = " ".join(point(i, row[name]) for i, row in enumerate(rows))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        total = sum(row[name] for row in rows)
        x = PAD_LEFT + 90 + index * 150
        label = escape(f"{name.replace('_', '-')}: {total}")
        parts.append(f'<text x="{x}" y="{HEIGHT - 6}" font-size="10" fill="{colour}">{label}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # numbers and fixed labels only
