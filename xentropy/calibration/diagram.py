"""Reliability diagram as SVG, in the style of Guo et al. (2017), Figure 1.

Top: accuracy per bin as bars against the diagonal of perfect calibration, the gap to
the bin's mean confidence marked in red. Bottom: the share of samples per bin (the
confidence histogram) with the overall accuracy and mean confidence as dashed lines.
Plain SVG text, no plotting library: the figure is a few dozen shapes.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from xentropy.calibration.report import CalibrationResult

WIDTH, HEIGHT = 560, 640
LEFT, RIGHT = 78, 30
TOP_Y, TOP_H = 58, 360  # reliability panel
HIST_Y, HIST_H = 496, 90  # histogram panel
PLOT_W = WIDTH - LEFT - RIGHT

BLUE, RED, GREY = "#1f5fa8", "#d62728", "#555555"


def _x(value: float) -> float:
    return LEFT + value * PLOT_W


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def reliability_diagram(result: CalibrationResult) -> str:
    """Render ``result`` (from xentropy.calibration.calibration_report) as an SVG document."""
    binary = result.per_class is None
    x_label = "Predicted probability of class 1" if binary else "Confidence (top-label probability)"
    y_label = "Observed frequency of class 1" if binary else "Accuracy"
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Arial, sans-serif" '
        'font-size="13">',
        "<title>Reliability diagram</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="30" text-anchor="middle" font-size="17" '
        'font-weight="bold">Reliability diagram</text>',
    ]

    def y_top(value: float) -> float:
        return TOP_Y + (1.0 - value) * TOP_H

    # Grid and axes of the reliability panel.
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(
            f'<line x1="{LEFT}" y1="{y_top(tick):.1f}" x2="{LEFT + PLOT_W}" y2="{y_top(tick):.1f}" '
            'stroke="#e4e4e4"/>'
        )
        parts.append(
            f'<text x="{LEFT - 8}" y="{y_top(tick) + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>'
        )
        parts.append(
            f'<text x="{_x(tick):.1f}" y="{HIST_Y + HIST_H + 18}" text-anchor="middle">'
            f"{_fmt(tick)}</text>"
        )

    for b in result.bins:
        if b.count == 0 or b.accuracy is None or b.mean_confidence is None:
            continue
        x0, x1 = _x(b.lower) + 1, _x(b.upper) - 1
        acc, conf = b.accuracy, b.mean_confidence
        parts.append(
            f'<rect class="bar" x="{x0:.2f}" y="{y_top(acc):.2f}" width="{x1 - x0:.2f}" '
            f'height="{TOP_H * acc:.2f}" fill="{BLUE}" stroke="#123a66" stroke-width="0.8">'
            f"<title>({_fmt(b.lower)}, {_fmt(b.upper)}]: accuracy {acc:.3f}, "
            f"confidence {conf:.3f}, {b.count} samples</title></rect>"
        )
        low, high = sorted((acc, conf))
        parts.append(
            f'<rect class="gap" x="{x0:.2f}" y="{y_top(high):.2f}" width="{x1 - x0:.2f}" '
            f'height="{TOP_H * (high - low):.2f}" fill="{RED}" fill-opacity="0.28" '
            f'stroke="{RED}" stroke-width="1"/>'
        )
    parts += [
        f'<line x1="{_x(0):.1f}" y1="{y_top(0):.1f}" x2="{_x(1):.1f}" y2="{y_top(1):.1f}" '
        f'stroke="{GREY}" stroke-width="1.5" stroke-dasharray="6 4"/>',
        f'<rect x="{LEFT}" y="{TOP_Y}" width="{PLOT_W}" height="{TOP_H}" fill="none" '
        'stroke="black"/>',
        f'<text x="{LEFT - 50}" y="{TOP_Y + TOP_H / 2}" text-anchor="middle" '
        f'transform="rotate(-90 {LEFT - 50} {TOP_Y + TOP_H / 2})">{escape(y_label)}</text>',
    ]
    # Legend and the headline numbers, top left where a well-calibrated plot is empty.
    lx, ly = LEFT + 12, TOP_Y + 20
    parts += [
        f'<rect x="{lx}" y="{ly - 10}" width="14" height="10" fill="{BLUE}"/>',
        f'<text x="{lx + 20}" y="{ly}">Outputs</text>',
        f'<rect x="{lx}" y="{ly + 8}" width="14" height="10" fill="{RED}" fill-opacity="0.28" '
        f'stroke="{RED}"/>',
        f'<text x="{lx + 20}" y="{ly + 18}">Gap</text>',
        f'<line x1="{lx}" y1="{ly + 31}" x2="{lx + 14}" y2="{ly + 31}" stroke="{GREY}" '
        'stroke-dasharray="4 2" stroke-width="1.5"/>',
        f'<text x="{lx + 20}" y="{ly + 36}">Perfect calibration</text>',
        f'<text class="ece" x="{lx}" y="{ly + 62}" font-size="15" font-weight="bold">'
        f"ECE = {100 * result.ece:.2f}%</text>",
        f'<text x="{lx}" y="{ly + 82}">N = {result.n_samples}, {len(result.bins)} '
        f"{escape(result.binning)} bins</text>",
    ]

    # Histogram: share of samples per bin, with accuracy and mean confidence.
    shares = [b.count / result.n_samples for b in result.bins]
    top_share = max(shares) if shares and max(shares) > 0 else 1.0

    def y_hist(share: float) -> float:
        return HIST_Y + HIST_H * (1.0 - share / top_share)

    for b, share in zip(result.bins, shares, strict=True):
        if b.count == 0:
            continue
        x0, x1 = _x(b.lower) + 1, _x(b.upper) - 1
        parts.append(
            f'<rect class="hist" x="{x0:.2f}" y="{y_hist(share):.2f}" width="{x1 - x0:.2f}" '
            f'height="{HIST_H * share / top_share:.2f}" fill="{BLUE}" fill-opacity="0.75"/>'
        )
    for value, label, dash in (
        (result.accuracy, "Accuracy", "6 3"),
        (result.mean_confidence, "Avg. confidence", "2 3"),
    ):
        parts.append(
            f'<line x1="{_x(value):.1f}" y1="{HIST_Y}" x2="{_x(value):.1f}" '
            f'y2="{HIST_Y + HIST_H}" stroke="black" stroke-width="1.5" stroke-dasharray="{dash}">'
            f"<title>{label} {value:.3f}</title></line>"
        )
    parts += [
        f'<rect x="{LEFT}" y="{HIST_Y}" width="{PLOT_W}" height="{HIST_H}" fill="none" '
        'stroke="black"/>',
        f'<text x="{LEFT - 8}" y="{HIST_Y + 4}" text-anchor="end">{100 * top_share:.0f}%</text>',
        f'<text x="{LEFT - 8}" y="{HIST_Y + HIST_H + 4}" text-anchor="end">0</text>',
        f'<text x="{LEFT - 50}" y="{HIST_Y + HIST_H / 2}" text-anchor="middle" '
        f'transform="rotate(-90 {LEFT - 50} {HIST_Y + HIST_H / 2})">% of samples</text>',
        f'<text x="{LEFT + PLOT_W}" y="{HIST_Y - 8}" text-anchor="end" font-size="11">'
        f"dashed: accuracy {result.accuracy:.3f}; dotted: avg. confidence "
        f"{result.mean_confidence:.3f}</text>",
        f'<text x="{LEFT + PLOT_W / 2}" y="{HIST_Y + HIST_H + 40}" text-anchor="middle">'
        f"{escape(x_label)}</text>",
        "</svg>",
    ]
    return "\n".join(parts) + "\n"
