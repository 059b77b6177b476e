"""Small dependency-free SVG charts for asset metadata (no plotting library in the stack).

Each function returns an SVG document; ``markdown_image`` embeds one in a markdown metadata
value so the Dagster UI shows it inline.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence

WIDTH, HEIGHT, PAD = 480, 240, 40
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def markdown_image(svg: str, alt: str) -> str:
    data = base64.b64encode(svg.encode()).decode()
    return f"![{alt}](data:image/svg+xml;base64,{data})"


def _scale(lo: float, hi: float, a: float, b: float) -> tuple[float, float]:
    span = (hi - lo) or 1.0
    return lo, (b - a) / span


def line_chart(curves: Mapping[str, Sequence[float]], title: str) -> str:
    """One polyline per curve over its epochs (1-based), each on its own min-max scale."""
    parts = [_header(title)]
    for i, (name, values) in enumerate(curves.items()):
        vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        if not vals:
            continue
        lo, hi = min(vals), max(vals)
        _, sy = _scale(lo, hi, 0, HEIGHT - 2 * PAD)
        n = max(len(vals) - 1, 1)
        points = " ".join(
            f"{PAD + j * (WIDTH - 2 * PAD) / n:.1f},{HEIGHT - PAD - (v - lo) * sy:.1f}"
            for j, v in enumerate(vals)
        )
        color = COLORS[i % len(COLORS)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        parts.append(
            f'<text x="{PAD + 4}" y="{PAD + 14 * (i + 1)}" fill="{color}" font-size="11">'
            f"{name}: {vals[0]:.4g} → {vals[-1]:.4g} (min {lo:.4g}, max {hi:.4g})</text>"
        )
    parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" font-size="11">epoch</text>')
    return "".join(parts) + "</svg>"


def bar_chart(values: Mapping[str, tuple[float, float, float]], title: str) -> str:
    """Bars of ``name -> (value, ci_low, ci_high)`` with CI whiskers, on a 0-based axis."""
    parts = [_header(title)]
    top = max((hi for _, _, hi in values.values() if math.isfinite(hi)), default=1.0) or 1.0
    n = max(len(values), 1)
    slot = (WIDTH - 2 * PAD) / n
    sy = (HEIGHT - 2 * PAD) / top
    for i, (name, (v, lo, hi)) in enumerate(values.items()):
        x = PAD + i * slot + slot * 0.15
        w = slot * 0.7
        color = COLORS[i % len(COLORS)]
        parts.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - PAD - v * sy:.1f}" width="{w:.1f}" '
            f'height="{v * sy:.1f}" fill="{color}" opacity="0.8"/>'
        )
        cx = x + w / 2
        parts.append(
            f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{HEIGHT - PAD - lo * sy:.1f}" '
            f'y2="{HEIGHT - PAD - hi * sy:.1f}" stroke="black" stroke-width="2"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - PAD + 14}" font-size="11">{name} {v:.4f}</text>'
        )
    return "".join(parts) + "</svg>"


def _header(title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
        f'<text x="{PAD}" y="18" font-size="13" font-weight="bold">{title}</text>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#888"/>'
    )
