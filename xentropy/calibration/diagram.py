"""Reliability diagrams as SVG, in the style of Guo et al. (2017), Figure 1.

Top: accuracy per bin as bars against the diagonal of perfect calibration, the gap to
the bin's mean confidence marked in red; optionally each bar's Clopper–Pearson interval
(error bars with caps) and the smoothed reliability curve of Błasiok & Nakkiran (2023)
over the bars, as relplot draws its main line. Bottom: the share of samples per bin (the
confidence histogram) with the overall accuracy and mean confidence as dashed lines.
Plain SVG text, no plotting library: the figure is a few dozen shapes.

* :func:`reliability_diagram` — one result, one figure.
* :func:`reliability_diagrams` — small multiples: one panel per result (a label of
  multi-label input), at most :data:`MAX_PANELS`, in a grid. Both draw every panel with
  the same code, the grid only scales and places it.

What they draw beyond the bins comes from the report itself: each bin's
``accuracy_interval`` (a report with ``confidence_level``) and ``estimates.smooth_curve``
(a report with ``estimators=["smooth_ece"]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

import numpy as np

from xentropy._validation import InputError
from xentropy.calibration.binning import CalibrationBin
from xentropy.calibration.report import CalibrationResult

if TYPE_CHECKING:
    from xentropy.calibration.estimators import SmoothECE

#: Most panels of :func:`reliability_diagrams` (more labels: draw the micro diagram).
MAX_PANELS = 16

#: A bin's interval (lower, upper), or ``None`` for a bin without samples.
Interval = tuple[float, float] | None

WIDTH, HEIGHT = 560, 640  # one panel
LEFT, RIGHT = 78, 30
TOP_Y, TOP_H = 58, 360  # reliability panel
HIST_Y, HIST_H = 496, 90  # histogram panel
PLOT_W = WIDTH - LEFT - RIGHT
HEADER = 44  # the figure title above a grid of panels
#: The smooth curve is solid where the density of the confidences is at least this (the
#: uniform density is 1), dashed elsewhere.
DENSE = 0.1

BLUE, RED, GREY, INK, ORANGE = "#1f5fa8", "#d62728", "#555555", "#111111", "#ff7f0e"


def _x(value: float) -> float:
    return LEFT + value * PLOT_W


def _y_top(value: float) -> float:
    return TOP_Y + (1.0 - value) * TOP_H


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def _level_text(confidence_level: float | None) -> str:
    return "" if confidence_level is None else f"{100 * confidence_level:g}% "


# --------------------------------------------------------------------------- the panel


def _check_intervals(bins: Sequence[CalibrationBin], field: str) -> None:
    """Every drawn bar of a report with intervals needs a finite ``accuracy_interval``
    0 <= lower <= upper <= 1 (no NaN may reach a coordinate; a report from
    :func:`~xentropy.calibration.calibration_report` always has one); bins without a bar
    are ignored."""
    for i, b in enumerate(bins):
        if b.count == 0 or b.accuracy is None:
            continue
        iv = b.accuracy_interval
        if iv is None or not all(math.isfinite(v) for v in iv) or not (
            0.0 <= iv[0] <= iv[1] <= 1.0
        ):
            raise InputError(field, f"expected an accuracy_interval 0 <= lower <= upper <= 1 "
                             f"for bin {i}, got {iv}", position=(i,), kind="out_of_range")


def _check_smooth(smooth: SmoothECE, field: str) -> None:
    curve = smooth.curve
    values = np.array([curve.mesh, curve.accuracy]) if curve.mesh else np.zeros((2, 0))
    if len(curve.mesh) != len(curve.accuracy) or len(curve.mesh) < 2 or not (
        np.isfinite(values).all() and math.isfinite(smooth.ece)
    ):
        raise InputError(field, "expected a smooth curve (estimates.smooth_curve) of at "
                         "least 2 finite points", kind="out_of_range")


def _panel(
    result: CalibrationResult,
    title: str,
    intervals: Sequence[Interval] | None,
    confidence_level: float | None,
    smooth: SmoothECE | None,
) -> list[str]:
    """The shapes of one diagram in its own WIDTH × HEIGHT frame (validated input)."""
    binary = result.per_class is None
    x_label = "Predicted probability of class 1" if binary else "Confidence (top-label probability)"
    y_label = "Observed frequency of class 1" if binary else "Accuracy"
    parts: list[str] = [
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text class="title" x="{WIDTH / 2}" y="30" text-anchor="middle" font-size="17" '
        f'font-weight="bold">{escape(title)}</text>',
    ]
    y_top = _y_top

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

    drawn = [b.count > 0 and b.accuracy is not None and b.mean_confidence is not None
             for b in result.bins]
    for b, bar in zip(result.bins, drawn, strict=True):
        if not bar:
            continue
        assert b.accuracy is not None and b.mean_confidence is not None
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
    if intervals is not None:
        # Over the bars and gaps: a whisker at the bar's centre, capped at both ends
        # (4 decimals: the ends are read back to 1e-6 of the unit interval).
        for b, bar, iv in zip(result.bins, drawn, intervals, strict=True):
            if not bar:
                continue
            assert iv is not None
            xc = (_x(b.lower) + _x(b.upper)) / 2
            cap = min(6.0, max((_x(b.upper) - _x(b.lower)) / 2 - 1, 0.5))
            lo, hi = y_top(iv[0]), y_top(iv[1])
            parts.append(
                f'<g class="interval" stroke="{INK}" stroke-width="1.3">'
                f"<title>{_level_text(confidence_level)}interval of the accuracy: "
                f"[{iv[0]:.3f}, {iv[1]:.3f}]</title>"
                f'<line class="whisker" x1="{xc:.4f}" y1="{hi:.4f}" x2="{xc:.4f}" '
                f'y2="{lo:.4f}"/>'
                f'<line class="cap" x1="{xc - cap:.4f}" y1="{hi:.4f}" x2="{xc + cap:.4f}" '
                f'y2="{hi:.4f}"/>'
                f'<line class="cap" x1="{xc - cap:.4f}" y1="{lo:.4f}" x2="{xc + cap:.4f}" '
                f'y2="{lo:.4f}"/></g>'
            )
    parts.append(
        f'<line x1="{_x(0):.1f}" y1="{y_top(0):.1f}" x2="{_x(1):.1f}" y2="{y_top(1):.1f}" '
        f'stroke="{GREY}" stroke-width="1.5" stroke-dasharray="6 4"/>'
    )
    if smooth is not None:
        # relplot draws its line thinner where the kernel density of the confidences is
        # low, fading where there is no data: here the whole curve thin and dashed, and
        # solid over every run of mesh points with density >= DENSE.
        curve = smooth.curve
        xy = [f"{_x(t):.4f},{y_top(min(max(a, 0.0), 1.0)):.4f}"
              for t, a in zip(curve.mesh, curve.accuracy, strict=True)]
        parts.append(
            f'<polyline class="smooth" points="{" ".join(xy)}" fill="none" stroke="{ORANGE}" '
            'stroke-width="1.5" stroke-dasharray="4 3"><title>smoothed reliability curve, '
            f"bandwidth {smooth.bandwidth:.4g}</title></polyline>"
        )
        dense = np.asarray(curve.density) >= DENSE
        edges = np.flatnonzero(np.diff(np.concatenate([[0], dense.astype(np.int8), [0]])))
        for start, stop in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
            if stop - start >= 2:
                parts.append(
                    f'<polyline class="smooth-dense" points="{" ".join(xy[start:stop])}" '
                    f'fill="none" stroke="{ORANGE}" stroke-width="2.5" '
                    'stroke-linejoin="round"/>'
                )
    parts += [
        f'<rect x="{LEFT}" y="{TOP_Y}" width="{PLOT_W}" height="{TOP_H}" fill="none" '
        'stroke="black"/>',
        f'<text x="{LEFT - 50}" y="{TOP_Y + TOP_H / 2}" text-anchor="middle" '
        f'transform="rotate(-90 {LEFT - 50} {TOP_Y + TOP_H / 2})">{escape(y_label)}</text>',
    ]
    # Legend and the headline numbers, top left where a well-calibrated plot is empty, on
    # a translucent box: error bars of small bins can reach up there.
    lx, ly = LEFT + 12, TOP_Y + 20
    level = _level_text(confidence_level)
    entries = ["Outputs", "Gap", "Perfect calibration"]
    legend = [
        f'<rect x="{lx}" y="{ly - 10}" width="14" height="10" fill="{BLUE}"/>',
        f'<text x="{lx + 20}" y="{ly}">Outputs</text>',
        f'<rect x="{lx}" y="{ly + 8}" width="14" height="10" fill="{RED}" fill-opacity="0.28" '
        f'stroke="{RED}"/>',
        f'<text x="{lx + 20}" y="{ly + 18}">Gap</text>',
        f'<line x1="{lx}" y1="{ly + 31}" x2="{lx + 14}" y2="{ly + 31}" stroke="{GREY}" '
        'stroke-dasharray="4 2" stroke-width="1.5"/>',
        f'<text x="{lx + 20}" y="{ly + 36}">Perfect calibration</text>',
    ]
    row = ly + 36  # baseline of the last legend entry
    if intervals is not None:
        row += 18
        entries.append(f"{level}Clopper–Pearson interval")
        legend += [
            f'<g stroke="{INK}" stroke-width="1.3"><line x1="{lx + 7}" y1="{row - 12}" '
            f'x2="{lx + 7}" y2="{row + 1}"/><line x1="{lx + 3}" y1="{row - 12}" '
            f'x2="{lx + 11}" y2="{row - 12}"/><line x1="{lx + 3}" y1="{row + 1}" '
            f'x2="{lx + 11}" y2="{row + 1}"/></g>',
            f'<text x="{lx + 20}" y="{row}">{entries[-1]}</text>',
        ]
    if smooth is not None:
        row += 18
        entries.append(f"smooth ECE {100 * smooth.ece:.2f}%")
        legend += [
            f'<line x1="{lx}" y1="{row - 5}" x2="{lx + 14}" y2="{row - 5}" stroke="{ORANGE}" '
            'stroke-width="2.5"/>',
            f'<text class="smooth-ece" x="{lx + 20}" y="{row}">{entries[-1]}</text>',
        ]
    headline = f"ECE = {100 * result.ece:.2f}%"
    counts = f"N = {result.n_samples}, {len(result.bins)} {result.binning} bins"
    legend += [
        f'<text class="ece" x="{lx}" y="{row + 26}" font-size="15" font-weight="bold">'
        f"{headline}</text>",
        f'<text x="{lx}" y="{row + 46}">{escape(counts)}</text>',
    ]
    # The box's width from the text lengths (about 0.56 em per character of DejaVu Sans).
    box_w = max(max(20 + 7.3 * len(e) for e in entries), 10.5 * len(headline),
                7.3 * len(counts)) + 12
    parts.append(
        f'<rect class="legend" x="{lx - 6}" y="{ly - 16}" width="{box_w:.1f}" '
        f'height="{row + 52 - (ly - 16)}" rx="3" fill="white" fill-opacity="0.8" '
        'stroke="#cccccc"/>'
    )
    parts += legend

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
    ]
    return parts


def _document(width: float, height: float, title: str, body: list[str]) -> str:
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}" font-family="DejaVu Sans, Arial, sans-serif" '
        'font-size="13">',
        f"<title>{escape(title)}</title>",
    ]
    return "\n".join([*head, *body, "</svg>"]) + "\n"


# --------------------------------------------------------------------------- renderers


def _own_overlays(
    result: CalibrationResult, field: str
) -> tuple[tuple[Interval, ...] | None, float | None, SmoothECE | None]:
    """What ``result`` carries for the overlays, checked (``field`` names it): each bin's
    ``accuracy_interval`` and their level (a report with ``confidence_level``) and the
    smooth curve (with ``estimators`` containing ``"smooth_ece"``); ``None`` for what it
    does not carry."""
    from xentropy.calibration.estimators import SmoothECE

    intervals = level = smooth = None
    if result.intervals is not None:
        _check_intervals(result.bins, field)
        intervals = tuple(b.accuracy_interval for b in result.bins)
        level = result.intervals.confidence_level
    e = result.estimates
    if e is not None and e.smooth_curve is not None and e.smooth_ece is not None:
        smooth = SmoothECE(e.smooth_ece, float(e.smooth_bandwidth or 0.0), e.smooth_curve)
        _check_smooth(smooth, field)
    return intervals, level, smooth


def reliability_diagram(result: CalibrationResult, *,
                        title: str = "Reliability diagram") -> str:
    """Render ``result`` (from :func:`~xentropy.calibration.calibration_report`) as SVG.

    Args:
      result: the report; one bar per bin with ``accuracy`` (bins without samples have
        none). A report with ``confidence_level`` also gets each bar's
        ``accuracy_interval`` (its Clopper–Pearson interval) as an error bar, its level in
        the legend; one with ``estimators=["smooth_ece"]`` its ``estimates.smooth_curve``
        over the bars and its ``estimates.smooth_ece`` in the legend.
      title: the figure's title (escaped).

    Returns:
      an SVG document (560 × 640), deterministic: the same arguments give the same text.
      A value v in [0, 1] is drawn at x = 78 + 452·v and, in the reliability panel,
      y = 58 + 360·(1 − v).

    Raises:
      InputError: naming ``result`` when a drawn bar has no finite ``accuracy_interval``
        in [0, 1] or the smooth curve is not finite (never for a report of
        :func:`~xentropy.calibration.calibration_report`).

    >>> from xentropy.calibration import calibration_report
    >>> r = calibration_report([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], n_bins=2,
    ...                        confidence_level=0.95, bootstrap={"n_resamples": 1})
    >>> [tuple(round(v, 4) for v in b.accuracy_interval) for b in r.bins]
    [(0.0084, 0.9057), (0.025, 1.0)]
    >>> svg = reliability_diagram(r)
    >>> svg.count('class="bar"'), svg.count('class="interval"'), "ECE = 8.75%" in svg
    (2, 2, True)
    """
    intervals, level, smooth = _own_overlays(result, "result")
    return _document(WIDTH, HEIGHT, title, _panel(result, title, intervals, level, smooth))


def reliability_diagrams(
    results: Sequence[CalibrationResult],
    titles: Sequence[str],
    *,
    title: str = "Reliability diagrams",
) -> str:
    """Small multiples: one reliability diagram per result, in a grid.

    Args:
      results: 1 to :data:`MAX_PANELS` reports (the ``per_label`` reports of multi-label
        input; with more labels, draw the pooled ``micro`` report with
        :func:`reliability_diagram` instead), each drawn with its own intervals and
        smooth curve as by :func:`reliability_diagram`.
      titles: one title per panel (escaped), e.g. the label names.
      title: the figure's title (escaped).

    Returns:
      an SVG document: c = ⌈√P⌉ columns and ⌈P/c⌉ rows of the P panels in row-major
      order, each the drawing of :func:`reliability_diagram` scaled by 1/√c, under the
      title. Deterministic.

    Raises:
      InputError: naming ``results``, ``titles`` or ``results[i]`` (as ``result`` for
        :func:`reliability_diagram`).

    >>> from xentropy.calibration import calibration_report
    >>> rs = [calibration_report([0.2, 0.7, 0.9], y, n_bins=3) for y in ([0, 1, 1], [1, 0, 1])]
    >>> svg = reliability_diagrams(rs, ["cat", "dog & co"])
    >>> svg.count('class="panel"'), svg.count('class="bar"'), "dog &amp; co" in svg
    (2, 4, True)
    """
    n = len(results)
    if not 1 <= n <= MAX_PANELS:
        raise InputError("results", f"expected 1 to {MAX_PANELS} results (more labels: draw "
                         f"the micro diagram), got {n}", kind="out_of_range")
    if len(titles) != n:
        raise InputError("titles", f"expected one entry per result ({n}), got {len(titles)}",
                         kind="shape_mismatch")
    overlays = [_own_overlays(r, f"results[{i}]") for i, r in enumerate(results)]
    cols = math.isqrt(n - 1) + 1  # ⌈√n⌉
    rows = -(-n // cols)
    scale = 1 / math.sqrt(cols)
    cell_w, cell_h = WIDTH * scale, HEIGHT * scale
    body = [
        f'<rect x="0" y="0" width="{cols * cell_w:.4f}" height="{HEADER + rows * cell_h:.4f}" '
        'fill="white"/>',
        f'<text x="{cols * cell_w / 2:.4f}" y="30" text-anchor="middle" font-size="19" '
        f'font-weight="bold">{escape(title)}</text>',
    ]
    for i, res in enumerate(results):
        r, c = divmod(i, cols)
        body.append(f'<g class="panel" transform="translate({c * cell_w:.4f} '
                    f'{HEADER + r * cell_h:.4f}) scale({scale:.6f})">')
        body += _panel(res, titles[i], *overlays[i])
        body.append("</g>")
    width = round(cols * cell_w, 4)
    height = round(HEADER + rows * cell_h, 4)
    return _document(width, height, title, body)
