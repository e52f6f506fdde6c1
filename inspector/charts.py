"""Small SVG charts for reports: pure functions from numbers to markup.

Plain SVG instead of a plotting library keeps a report's HTML self-contained
(no scripts, no image files), renders identically in a browser and in
WeasyPrint's PDF, and weighs kilobytes. Text is escaped; numbers are formatted
here, once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#718096", "#d69e2e")


def fmt(value: float) -> str:
    """Thousands separators, fewer decimals for bigger numbers."""
    a = abs(value)
    if a >= 100:
        return f"{value:,.0f}"
    if a >= 1:
        return f"{value:,.1f}"
    return f"{value:.3g}"


def bar_chart(bars: Sequence[tuple[str, float]], *, unit: str, title: str, width: int = 640,
              height: int = 200, color: str = PALETTE[0], label_every: int = 1) -> str:
    """Vertical bars (e.g. consumption per day) with a y-axis maximum and labels."""
    pad_l, pad_b, pad_t = 56, 28, 24
    w, h = width - pad_l - 8, height - pad_b - pad_t
    top = max((v for _, v in bars), default=0.0) or 1.0
    n = max(1, len(bars))
    bw = w / n
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<text x="{pad_l}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
             f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" '
             'stroke="#444"/>',
             f'<text x="{pad_l - 4}" y="{pad_t + 4}" font-size="9" text-anchor="end">'
             f"{fmt(top)}</text>",
             f'<text x="{pad_l - 4}" y="{pad_t + h}" font-size="9" text-anchor="end">0</text>',
             f'<text x="4" y="{pad_t + h / 2}" font-size="9">{escape(unit)}</text>']
    for i, (label, v) in enumerate(bars):
        bh = max(0.0, v) / top * h
        x = pad_l + i * bw
        parts.append(f'<rect x="{x + bw * 0.1:.1f}" y="{pad_t + h - bh:.1f}" '
                     f'width="{bw * 0.8:.1f}" height="{bh:.1f}" fill="{color}">'
                     f"<title>{escape(label)}: {fmt(v)} {escape(unit)}</title></rect>")
        if i % label_every == 0:
            parts.append(f'<text x="{x + bw / 2:.1f}" y="{pad_t + h + 12}" font-size="8" '
                         f'text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(bars: Sequence[tuple[str, float]], *, unit: str, title: str, width: int = 640,
               row: int = 22) -> str:
    """Horizontal bars with values (e.g. electricity by sub-item)."""
    pad_l, pad_t = 230, 24
    w = width - pad_l - 140  # room for "41,149 kWh (49%)" after the longest bar
    top = max((abs(v) for _, v in bars), default=0.0) or 1.0
    height = pad_t + row * len(bars) + 8
    total = sum(v for _, v in bars) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<text x="0" y="14" font-size="12" font-weight="bold">{escape(title)}</text>']
    for i, (label, v) in enumerate(bars):
        y = pad_t + i * row
        bw = max(0.0, v) / top * w
        parts.append(f'<text x="{pad_l - 6}" y="{y + 14}" font-size="10" text-anchor="end">'
                     f"{escape(label)}</text>")
        parts.append(f'<rect x="{pad_l}" y="{y + 3}" width="{bw:.1f}" height="{row - 8}" '
                     f'fill="{PALETTE[i % len(PALETTE)]}"/>')
        parts.append(f'<text x="{pad_l + bw + 4:.1f}" y="{y + 14}" font-size="10">{fmt(v)} '
                     f"{escape(unit)} ({v / total:.0%})</text>")
    parts.append("</svg>")
    return "".join(parts)


def quota_chart(*, ytd: float, pro_rated: float, allowance: float, projected: float | None,
                unit: str, width: int = 640, labels: Mapping[str, str] | None = None) -> str:
    """Year-to-date against the pro-rated quota and the annual allowance (and the projection).

    ``labels`` (keys ``pro_rated``, ``allowance``, ``ytd``, ``projected``, ``title``): the
    finished texts in the report's language (``inspector.render`` translates them); English
    with this module's number format without it.
    """
    text = {"pro_rated": f"pro-rated {fmt(pro_rated)}",
            "allowance": f"annual allowance {fmt(allowance)} {unit}",
            "ytd": f"year-to-date {fmt(ytd)}",
            "projected": f"projected {fmt(projected)}" if projected is not None else "",
            "title": "quota", **(labels or {})}
    pad_l, w, y = 10, width - 20, 30
    top = max(allowance, ytd, projected or 0.0) * 1.05 or 1.0

    def x(v: float) -> float:
        return pad_l + v / top * w

    color = "#c53030" if ytd >= allowance or (projected or 0) >= allowance else "#2b6cb0"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="86" '
             f'viewBox="0 0 {width} 86" role="img" aria-label="{escape(text["title"])}">',
             f'<rect x="{pad_l}" y="{y}" width="{x(allowance) - pad_l:.1f}" height="18" '
             'fill="#e2e8f0"/>',
             f'<rect x="{pad_l}" y="{y}" width="{x(ytd) - pad_l:.1f}" height="18" '
             f'fill="{color}"/>',
             f'<line x1="{x(pro_rated):.1f}" y1="{y - 6}" x2="{x(pro_rated):.1f}" y2="{y + 24}" '
             'stroke="#2d3748" stroke-dasharray="3,2"/>',
             f'<text x="{x(pro_rated):.1f}" y="{y - 9}" font-size="9" text-anchor="middle">'
             f"{escape(text['pro_rated'])}</text>",
             f'<text x="{x(allowance):.1f}" y="{y + 34}" font-size="9" text-anchor="end">'
             f"{escape(text['allowance'])}</text>",
             f'<text x="{pad_l}" y="{y + 34}" font-size="9">{escape(text["ytd"])}</text>']
    if projected is not None:
        parts += [f'<line x1="{x(projected):.1f}" y1="{y}" x2="{x(projected):.1f}" '
                  f'y2="{y + 18}" stroke="#c53030" stroke-width="2"/>',
                  f'<text x="{x(projected):.1f}" y="{y + 48}" font-size="9" '
                  f'text-anchor="middle" fill="#c53030">{escape(text["projected"])}</text>']
    parts.append("</svg>")
    return "".join(parts)
