"""The reliability diagrams of :mod:`xentropy.calibration.diagram`, read back from the SVG.

Oracles: the per-bin intervals are ``scipy.stats.binomtest(k, n).proportion_ci(level,
method="exact")`` with k and n counted here from the samples; the smooth curve is
``relplot.prepare_rel_diagram``'s ``mu`` on its ``mesh``. Both are mapped back from pixel
coordinates (x = 78 + 452·v, y = 58 + 360·(1 − v)) and must agree to 1e-6.
"""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, softmax
from scipy.stats import binomtest

from xentropy._validation import InputError
from xentropy.calibration import (
    MAX_PANELS,
    calibration_report,
    diagram_overlays,
    reliability_diagram,
    reliability_diagrams,
)

relplot = pytest.importorskip("relplot")

SVG = "{http://www.w3.org/2000/svg}"
LEFT, PLOT_W, TOP_Y, TOP_H = 78, 452, 58, 360


def _unit_x(px: float) -> float:
    return (px - LEFT) / PLOT_W


def _unit_y(py: float) -> float:
    return 1.0 - (py - TOP_Y) / TOP_H


def _with_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}{tag}") if e.get("class") == cls]


def _points(polyline: ET.Element) -> np.ndarray:
    return np.array([[float(v) for v in p.split(",")] for p in polyline.get("points", "").split()])


def _assert_finite_coordinates(svg: str) -> None:
    """Every number in every attribute is finite (no NaN, no inf reaches a coordinate)."""
    root = ET.fromstring(svg)
    for e in root.iter():
        for value in e.attrib.values():
            for token in re.split(r"[\s,()]+", value):
                if re.fullmatch(r"[-+]?[\d.]+(e[-+]?\d+)?|[-+]?(nan|inf)", token, re.I):
                    assert math.isfinite(float(token)), (e.tag, value)
    assert not re.search(r"\b(nan|inf)\b", svg, re.I)


def _multiclass(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * 2.5
    y = np.where(rng.uniform(size=n) < 0.6, z.argmax(axis=1), rng.integers(0, c, n))
    return z, y


def _oracle_counts(conf: np.ndarray, outcome: np.ndarray, lower: float, upper: float,
                   first: bool) -> tuple[int, int]:
    """k and n of the bin (lower, upper] (the first also holds its lower edge), counted."""
    inside = (conf > lower) & (conf <= upper)
    if first:
        inside |= conf == lower
    return int(outcome[inside].sum()), int(inside.sum())


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_interval_ends_are_scipys_exact_binomial_intervals(level: float) -> None:
    z, y = _multiclass(700, 5, seed=4)
    report = calibration_report(logits=z, labels=y, n_bins=12)
    ov = diagram_overlays(logits=z, labels=y, bins=report.bins, confidence_level=level)
    svg = reliability_diagram(report, intervals=ov.intervals, confidence_level=level)
    root = ET.fromstring(svg)
    p = softmax(z, axis=1)
    conf, outcome = p.max(axis=1), (p.argmax(axis=1) == y).astype(int)
    bars = _with_class(root, "rect", "bar")
    groups = _with_class(root, "g", "interval")
    nonempty = [i for i, b in enumerate(report.bins) if b.count > 0]
    assert len(bars) == len(groups) == len(nonempty) < 12  # some bins (< 1/5) are empty
    for i, g in zip(nonempty, groups, strict=True):
        b = report.bins[i]
        k, n = _oracle_counts(conf, outcome, b.lower, b.upper, i == 0)
        ci = binomtest(k, n).proportion_ci(level, method="exact")
        (whisker,) = [e for e in g if e.get("class") == "whisker"]
        caps = [e for e in g if e.get("class") == "cap"]
        assert _unit_y(float(whisker.get("y1"))) == pytest.approx(ci.high, abs=1e-6)
        assert _unit_y(float(whisker.get("y2"))) == pytest.approx(ci.low, abs=1e-6)
        assert sorted(float(c.get("y1")) for c in caps) == sorted(
            [float(whisker.get("y1")), float(whisker.get("y2"))]
        )
        # Centred on the bar.
        assert _unit_x(float(whisker.get("x1"))) == pytest.approx((b.lower + b.upper) / 2,
                                                                  abs=1e-6)
    texts = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert f"{100 * level:g}% Clopper–Pearson interval" in texts
    _assert_finite_coordinates(svg)


def test_smooth_curve_is_relplots_reliability_line() -> None:
    rng = np.random.default_rng(7)
    p = rng.uniform(0.05, 0.95, 900)
    y = (rng.uniform(size=900) < p**1.6).astype(int)
    report = calibration_report(p, y, n_bins=10)
    ov = diagram_overlays(p, y, bins=report.bins, smooth=True)
    assert ov.intervals is None and ov.smooth is not None
    svg = reliability_diagram(report, smooth=ov.smooth)
    root = ET.fromstring(svg)
    data = relplot.prepare_rel_diagram(p, y, plot_confidence_band=False)
    (line,) = _with_class(root, "polyline", "smooth")
    pts = _points(line)
    assert pts.shape == (len(data["mesh"]), 2)
    np.testing.assert_allclose(_unit_x(pts[:, 0]), data["mesh"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(_unit_y(pts[:, 1]), data["mu"], rtol=0, atol=1e-6)
    # The solid runs: exactly the mesh points where relplot's density is >= 0.1.
    dense = _with_class(root, "polyline", "smooth-dense")
    assert dense
    solid = np.concatenate([_points(d) for d in dense])
    where = np.flatnonzero(data["density"] >= 0.1)
    np.testing.assert_array_equal(solid, pts[where])
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert f"smooth ECE {100 * relplot.smECE(p, y):.2f}%" in texts
    assert not _with_class(root, "g", "interval")
    _assert_finite_coordinates(svg)


def test_empty_and_weightless_bins_have_neither_bar_nor_interval() -> None:
    # Confidences in (0.3, 0.5] and (0.8, 1] only; the sample at 0.85 weighs nothing, so
    # its bin has a count but no accuracy.
    p = np.array([0.31, 0.35, 0.42, 0.49, 0.85, 0.95, 0.97])
    y = np.array([0, 1, 0, 1, 1, 1, 0])
    w = np.array([1, 1, 1, 1, 0, 1, 1.0])
    report = calibration_report(p, y, n_bins=10, sample_weights=w)
    assert report.bins[8].count == 1 and report.bins[8].accuracy is None
    ov = diagram_overlays(p, y, bins=report.bins, sample_weights=w, confidence_level=0.9,
                          smooth=True)
    assert ov.intervals is not None
    assert [iv is None for iv in ov.intervals] == [b.count == 0 for b in report.bins]
    svg = reliability_diagram(report, intervals=ov.intervals, confidence_level=0.9,
                              smooth=ov.smooth)
    root = ET.fromstring(svg)
    drawn = [i for i, b in enumerate(report.bins) if b.accuracy is not None]
    assert drawn == [3, 4, 9]
    assert len(_with_class(root, "rect", "bar")) == 3
    assert len(_with_class(root, "g", "interval")) == 3
    # The weightless bin still counts in the histogram (share of samples).
    assert len(_with_class(root, "rect", "hist")) == 4
    _assert_finite_coordinates(svg)


def test_titles_are_escaped() -> None:
    report = calibration_report([0.2, 0.9], [0, 1], n_bins=2)
    nasty = 'A <b>&</b> "quoted" \'label\' ]]>'
    svg = reliability_diagram(report, title=nasty)
    assert "<b>" not in svg
    root = ET.fromstring(svg)
    assert root.find(f"{SVG}title").text == nasty
    (t,) = _with_class(root, "text", "title")
    assert t.text == nasty
    grid = reliability_diagrams([report, report], [nasty, "x<y"], title=nasty + "!")
    root = ET.fromstring(grid)
    assert [t.text for t in _with_class(root, "text", "title")] == [nasty, "x<y"]
    assert root.find(f"{SVG}title").text == nasty + "!"


@pytest.mark.parametrize(("n_labels", "cols", "rows"), [(1, 1, 1), (5, 3, 2), (16, 4, 4)])
def test_small_multiples_one_panel_per_label(n_labels: int, cols: int, rows: int) -> None:
    rng = np.random.default_rng(n_labels)
    z = rng.normal(size=(300, n_labels)) * 2
    t = (rng.uniform(size=(300, n_labels)) < expit(z) ** 1.3).astype(int)
    reports = [calibration_report(logits=z[:, j], labels=t[:, j], n_bins=8)
               for j in range(n_labels)]
    overlays = [diagram_overlays(logits=z[:, j], labels=t[:, j], bins=r.bins,
                                 confidence_level=0.95, smooth=True)
                for j, r in enumerate(reports)]
    titles = [f"label {j}" for j in range(n_labels)]
    svg = reliability_diagrams(reports, titles, intervals=[o.intervals for o in overlays],
                               confidence_level=0.95, smooth=[o.smooth for o in overlays])
    root = ET.fromstring(svg)
    panels = _with_class(root, "g", "panel")
    assert len(panels) == n_labels
    scale = 1 / math.sqrt(cols)
    assert float(root.get("width")) == pytest.approx(cols * 560 * scale, abs=1e-3)
    assert float(root.get("height")) == pytest.approx(44 + rows * 640 * scale, abs=1e-3)
    for j, (panel, report) in enumerate(zip(panels, reports, strict=True)):
        r, c = divmod(j, cols)
        assert panel.get("transform") == (
            f"translate({c * 560 * scale:.4f} {44 + r * 640 * scale:.4f}) scale({scale:.6f})"
        )
        # Each panel is the single diagram's drawing: same shapes, in the same order.
        single = ET.fromstring(reliability_diagram(
            report, intervals=overlays[j].intervals, confidence_level=0.95,
            smooth=overlays[j].smooth, title=titles[j],
        ))
        assert [ET.tostring(e) for e in panel] == [
            ET.tostring(e) for e in single if e.tag != f"{SVG}title"
        ]
        assert len(_with_class(panel, "rect", "bar")) == sum(b.count > 0 for b in report.bins)
        assert len(_with_class(panel, "polyline", "smooth")) == 1
    _assert_finite_coordinates(svg)


def test_seventeen_labels_are_refused_for_the_micro_diagram() -> None:
    report = calibration_report([0.2, 0.9], [0, 1], n_bins=2)
    with pytest.raises(InputError) as err:
        reliability_diagrams([report] * (MAX_PANELS + 1), ["x"] * (MAX_PANELS + 1))
    assert err.value.field == "results" and "micro" in err.value.message
    with pytest.raises(InputError) as err:
        reliability_diagrams([report] * 2, ["x"])
    assert err.value.field == "titles"


def test_micro_diagram_of_pooled_pairs() -> None:
    """More than 16 labels: the caller pools the N·C pairs row-major (the contract's
    ``micro``) and draws one diagram; the intervals count the pooled pairs."""
    rng = np.random.default_rng(11)
    p = rng.uniform(size=(60, 17))
    t = (rng.uniform(size=(60, 17)) < p).astype(int)
    micro = calibration_report(p.ravel(), t.ravel(), n_bins=5)
    ov = diagram_overlays(p.ravel(), t.ravel(), bins=micro.bins, confidence_level=0.95)
    svg = reliability_diagram(micro, intervals=ov.intervals, confidence_level=0.95,
                              title="Reliability diagram (micro, 17 labels)")
    root = ET.fromstring(svg)
    groups = _with_class(root, "g", "interval")
    assert len(groups) == 5
    for i, g in enumerate(groups):
        b = micro.bins[i]
        k, n = _oracle_counts(p.ravel(), t.ravel(), b.lower, b.upper, i == 0)
        low = binomtest(k, n).proportion_ci(0.95, method="exact").low
        assert _unit_y(float(g[1].get("y2"))) == pytest.approx(low, abs=1e-6)


def test_quantile_bins_with_weights_use_the_unweighted_counts() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(size=400)
    y = (rng.uniform(size=400) < p).astype(int)
    w = rng.integers(0, 4, 400).astype(float)
    report = calibration_report(p, y, n_bins=7, binning="quantile", sample_weights=w)
    ov = diagram_overlays(p, y, bins=report.bins, sample_weights=w, confidence_level=0.9)
    assert ov.intervals is not None
    for i, (b, iv) in enumerate(zip(report.bins, ov.intervals, strict=True)):
        k, n = _oracle_counts(p, y, b.lower, b.upper, i == 0)
        assert n == b.count
        ci = binomtest(k, n).proportion_ci(0.9, method="exact")
        assert iv == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_output_is_deterministic_and_plain_diagram_unchanged_without_overlays() -> None:
    z, y = _multiclass(200, 3, seed=1)
    report = calibration_report(logits=z, labels=y, n_bins=6)
    ov = diagram_overlays(logits=z, labels=y, bins=report.bins, confidence_level=0.95,
                          smooth=True)
    args = {"intervals": ov.intervals, "confidence_level": 0.95, "smooth": ov.smooth}
    assert reliability_diagram(report, **args) == reliability_diagram(report, **args)
    plain = ET.fromstring(reliability_diagram(report))
    assert not _with_class(plain, "g", "interval")
    assert not _with_class(plain, "polyline", "smooth")
    texts = [t.text or "" for t in plain.iter(f"{SVG}text")]
    assert not any("smooth" in t or "Clopper" in t for t in texts)


def test_bad_overlays_are_named() -> None:
    report = calibration_report([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], n_bins=2)
    with pytest.raises(InputError) as err:
        reliability_diagram(report, intervals=[(0.1, 0.9)])
    assert err.value.field == "intervals" and err.value.kind == "shape_mismatch"
    with pytest.raises(InputError) as err:
        reliability_diagram(report, intervals=[(0.1, 0.9), (float("nan"), 1.0)])
    assert err.value.field == "intervals" and err.value.position == (1,)
    with pytest.raises(InputError) as err:
        reliability_diagram(report, intervals=[(0.1, 0.9), None])
    assert err.value.position == (1,)
    other = calibration_report([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], n_bins=3)
    with pytest.raises(InputError) as err:
        diagram_overlays([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], bins=other.bins[:2])
    assert err.value.field == "bins"
    with pytest.raises(InputError) as err:
        diagram_overlays([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 2], bins=report.bins)
    assert err.value.field == "labels"
    with pytest.raises(InputError) as err:
        diagram_overlays([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], bins=report.bins,
                         confidence_level=1.0)
    assert err.value.field == "confidence_level"


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="librsvg2-bin not installed")
def test_librsvg_renders_the_diagrams_without_complaint(tmp_path: Path) -> None:
    """A real SVG renderer (librsvg) accepts the documents: no warning, and a PNG of the
    declared size."""
    z, y = _multiclass(400, 4, seed=2)
    report = calibration_report(logits=z, labels=y, n_bins=10)
    ov = diagram_overlays(logits=z, labels=y, bins=report.bins, confidence_level=0.95,
                          smooth=True)
    single = reliability_diagram(report, intervals=ov.intervals, confidence_level=0.95,
                                 smooth=ov.smooth, title="4 classes & <more>")
    grid = reliability_diagrams([report] * 5, [f"label {j}" for j in range(5)],
                                intervals=[ov.intervals] * 5, smooth=[ov.smooth] * 5)
    for name, svg in (("single", single), ("grid", grid)):
        src, png = tmp_path / f"{name}.svg", tmp_path / f"{name}.png"
        src.write_text(svg, encoding="utf-8")
        done = subprocess.run(["rsvg-convert", str(src), "-o", str(png)],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        head = png.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", head[16:24])
        root = ET.fromstring(svg)
        assert (width, height) == (math.ceil(float(root.get("width"))),
                                   math.ceil(float(root.get("height"))))


def test_a_report_with_intervals_and_smooth_ece_draws_its_own_overlays() -> None:
    """The report's own accuracy_interval and smooth curve give the diagram that the data's
    overlays give (two computations: the report's, and diagram_overlays' from the data)."""
    z, y = _multiclass(300, 4, seed=3)
    plain = calibration_report(logits=z, labels=y, n_bins=8)
    full = calibration_report(logits=z, labels=y, n_bins=8, confidence_level=0.9,
                              bootstrap={"n_resamples": 20}, estimators=["smooth_ece"])
    ov = diagram_overlays(logits=z, labels=y, bins=plain.bins, confidence_level=0.9,
                          smooth=True)
    expected = reliability_diagram(plain, intervals=ov.intervals, confidence_level=0.9,
                                   smooth=ov.smooth)
    assert reliability_diagram(full) == expected
    assert reliability_diagrams([full], ["a"]) == reliability_diagrams(
        [plain], ["a"], intervals=[ov.intervals], confidence_level=0.9, smooth=[ov.smooth])
