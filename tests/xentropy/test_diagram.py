"""The reliability diagrams of :mod:`xentropy.calibration.diagram`, read back from the SVG.

The diagram draws what the report carries: each bin's ``accuracy_interval`` (a report with
``confidence_level``) and ``estimates.smooth_curve`` (``estimators=["smooth_ece"]``).
Oracles, not our code: the per-bin intervals are ``scipy.stats.binomtest(k,
n).proportion_ci(level, method="exact")`` with k and n counted here from the samples (the
confidences and outcomes computed here with scipy's ``softmax``/``expit``); the smooth curve
is ``relplot.prepare_rel_diagram``'s ``mu`` on its ``mesh`` and the smooth ECE
``relplot.smECE``. The report's fields must agree with them to 1e-12 (intervals) and 1e-6
(curve), and so must the values mapped back from pixel coordinates (x = 78 + 452·v,
y = 58 + 360·(1 − v)) to 1e-6. Reports with intervals use a single bootstrap resample: the
bootstrap intervals are not drawn.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.special import expit, softmax
from scipy.stats import binomtest

from xentropy._validation import InputError
from xentropy.calibration import (
    MAX_PANELS,
    CalibrationResult,
    calibration_report,
    reliability_diagram,
    reliability_diagrams,
)

relplot = pytest.importorskip("relplot")

SVG = "{http://www.w3.org/2000/svg}"
LEFT, PLOT_W, TOP_Y, TOP_H = 78, 452, 58, 360
#: The cheapest bootstrap: the bins' Clopper–Pearson intervals do not depend on it.
ONE_RESAMPLE: dict[str, Any] = {"n_resamples": 1}


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


def _top_label(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The binned value and outcome of multi-class logits, computed with scipy."""
    p = softmax(z, axis=1)
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(int)


def _oracle_counts(conf: np.ndarray, outcome: np.ndarray, lower: float, upper: float,
                   first: bool) -> tuple[int, int]:
    """k and n of the bin (lower, upper] (the first also holds its lower edge), counted."""
    inside = (conf > lower) & (conf <= upper)
    if first:
        inside |= conf == lower
    return int(outcome[inside].sum()), int(inside.sum())


def _scipy_intervals(conf: np.ndarray, outcome: np.ndarray, report: CalibrationResult,
                     level: float) -> list[tuple[float, float] | None]:
    """Per bin of ``report``, scipy's exact binomial interval of the unweighted k of n
    counted here (``None`` for a bin without samples); n must be the bin's count."""
    out: list[tuple[float, float] | None] = []
    for i, b in enumerate(report.bins):
        k, n = _oracle_counts(conf, outcome, b.lower, b.upper, i == 0)
        assert n == b.count
        if n == 0:
            out.append(None)
            continue
        ci = binomtest(k, n).proportion_ci(level, method="exact")
        out.append((ci.low, ci.high))
    return out


def _assert_report_intervals(report: CalibrationResult,
                             expected: list[tuple[float, float] | None]) -> None:
    got = [b.accuracy_interval for b in report.bins]
    assert [iv is None for iv in got] == [iv is None for iv in expected]
    for iv, ex in zip(got, expected, strict=True):
        if ex is not None:
            assert iv == pytest.approx(ex, abs=1e-12)


def _assert_whiskers(root: ET.Element, report: CalibrationResult,
                     expected: list[tuple[float, float] | None]) -> None:
    """One interval group per bar, its whisker from the expected lower to upper end,
    capped at both, at the bar's centre (read back from pixels to 1e-6)."""
    drawn = [i for i, b in enumerate(report.bins) if b.count > 0 and b.accuracy is not None]
    groups = _with_class(root, "g", "interval")
    assert len(groups) == len(drawn) == len(_with_class(root, "rect", "bar"))
    for i, g in zip(drawn, groups, strict=True):
        b, ex = report.bins[i], expected[i]
        assert ex is not None
        (whisker,) = [e for e in g if e.get("class") == "whisker"]
        caps = [e for e in g if e.get("class") == "cap"]
        assert _unit_y(float(whisker.get("y1"))) == pytest.approx(ex[1], abs=1e-6)
        assert _unit_y(float(whisker.get("y2"))) == pytest.approx(ex[0], abs=1e-6)
        assert sorted(float(c.get("y1")) for c in caps) == sorted(
            [float(whisker.get("y1")), float(whisker.get("y2"))]
        )
        assert _unit_x(float(whisker.get("x1"))) == pytest.approx((b.lower + b.upper) / 2,
                                                                  abs=1e-6)


def _relplot(conf: np.ndarray, outcome: np.ndarray) -> dict[str, Any]:
    """relplot's reliability diagram data (without its bootstrap of the ECE's spread: the
    curve is the same, 80 times faster)."""
    data: dict[str, Any] = relplot.prepare_rel_diagram(
        conf, outcome, plot_confidence_band=False, report_CE_std=False)
    return data


def _assert_relplot_curve(root: ET.Element, report: CalibrationResult, conf: np.ndarray,
                          outcome: np.ndarray) -> None:
    """The report's smooth curve and ECE are relplot's, and so is the drawn line."""
    data = _relplot(conf, outcome)
    e = report.estimates
    assert e is not None and e.smooth_curve is not None and e.smooth_ece is not None
    np.testing.assert_allclose(e.smooth_curve.mesh, data["mesh"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(e.smooth_curve.accuracy, data["mu"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(e.smooth_curve.density, data["density"], rtol=1e-6, atol=1e-9)
    assert e.smooth_bandwidth == pytest.approx(float(data["sigma"]), abs=1e-6)
    smece = relplot.smECE(conf, outcome)
    assert e.smooth_ece == pytest.approx(smece, abs=1e-6)
    (line,) = _with_class(root, "polyline", "smooth")
    pts = _points(line)
    assert pts.shape == (len(data["mesh"]), 2)
    np.testing.assert_allclose(_unit_x(pts[:, 0]), data["mesh"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(_unit_y(pts[:, 1]), np.clip(data["mu"], 0, 1), rtol=0,
                               atol=1e-6)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert f"smooth ECE {100 * smece:.2f}%" in texts


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_interval_ends_are_scipys_exact_binomial_intervals(level: float) -> None:
    z, y = _multiclass(700, 5, seed=4)
    report = calibration_report(logits=z, labels=y, n_bins=12, confidence_level=level,
                                bootstrap=ONE_RESAMPLE)
    conf, outcome = _top_label(z, y)
    expected = _scipy_intervals(conf, outcome, report, level)
    assert sum(iv is not None for iv in expected) < 12  # some bins (< 1/5) are empty
    _assert_report_intervals(report, expected)
    svg = reliability_diagram(report)
    root = ET.fromstring(svg)
    _assert_whiskers(root, report, expected)
    texts = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert f"{100 * level:g}% Clopper–Pearson interval" in texts
    _assert_finite_coordinates(svg)


def test_smooth_curve_is_relplots_reliability_line() -> None:
    rng = np.random.default_rng(7)
    p = rng.uniform(0.05, 0.95, 900)
    y = (rng.uniform(size=900) < p**1.6).astype(int)
    report = calibration_report(p, y, n_bins=10, estimators=["smooth_ece"])
    assert report.intervals is None
    assert all(b.accuracy_interval is None for b in report.bins)
    svg = reliability_diagram(report)
    root = ET.fromstring(svg)
    _assert_relplot_curve(root, report, p, y)
    # The solid runs: exactly the mesh points where relplot's density is >= 0.1.
    data = _relplot(p, y)
    (line,) = _with_class(root, "polyline", "smooth")
    pts = _points(line)
    dense = _with_class(root, "polyline", "smooth-dense")
    assert dense
    solid = np.concatenate([_points(d) for d in dense])
    where = np.flatnonzero(data["density"] >= 0.1)
    np.testing.assert_array_equal(solid, pts[where])
    assert not _with_class(root, "g", "interval")
    _assert_finite_coordinates(svg)


def test_empty_and_weightless_bins_have_neither_bar_nor_interval() -> None:
    # Confidences in (0.3, 0.5] and (0.8, 1] only; the sample at 0.85 weighs nothing, so
    # its bin has a count (and an interval of its unweighted count) but no accuracy.
    p = np.array([0.31, 0.35, 0.42, 0.49, 0.85, 0.95, 0.97])
    y = np.array([0, 1, 0, 1, 1, 1, 0])
    w = np.array([1, 1, 1, 1, 0, 1, 1.0])
    report = calibration_report(p, y, n_bins=10, sample_weights=w, confidence_level=0.9,
                                bootstrap=ONE_RESAMPLE, estimators=["smooth_ece"])
    assert report.bins[8].count == 1 and report.bins[8].accuracy is None
    expected = _scipy_intervals(p, y, report, 0.9)
    assert [iv is None for iv in expected] == [b.count == 0 for b in report.bins]
    _assert_report_intervals(report, expected)
    assert report.estimates is not None and report.estimates.smooth_curve is not None
    svg = reliability_diagram(report)
    root = ET.fromstring(svg)
    drawn = [i for i, b in enumerate(report.bins) if b.accuracy is not None]
    assert drawn == [3, 4, 9]
    assert len(_with_class(root, "rect", "bar")) == 3
    _assert_whiskers(root, report, expected)  # three: none for the weightless bin 8
    assert len(_with_class(root, "polyline", "smooth")) == 1
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
    reports = [calibration_report(logits=z[:, j], labels=t[:, j], n_bins=8,
                                  confidence_level=0.95, bootstrap=ONE_RESAMPLE,
                                  estimators=["smooth_ece"])
               for j in range(n_labels)]
    titles = [f"label {j}" for j in range(n_labels)]
    svg = reliability_diagrams(reports, titles)
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
        single = ET.fromstring(reliability_diagram(report, title=titles[j]))
        assert [ET.tostring(e) for e in panel] == [
            ET.tostring(e) for e in single if e.tag != f"{SVG}title"
        ]
        # ... of its own label: label j's intervals and curve (the panel's shapes are
        # drawn in the single diagram's unscaled coordinates).
        conf, outcome = expit(z[:, j]), t[:, j]
        expected = _scipy_intervals(conf, outcome, report, 0.95)
        _assert_report_intervals(report, expected)
        _assert_whiskers(panel, report, expected)
        _assert_relplot_curve(panel, report, conf, outcome)
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
    micro = calibration_report(p.ravel(), t.ravel(), n_bins=5, confidence_level=0.95,
                               bootstrap=ONE_RESAMPLE)
    expected = _scipy_intervals(p.ravel(), t.ravel(), micro, 0.95)
    assert all(iv is not None for iv in expected)
    _assert_report_intervals(micro, expected)
    svg = reliability_diagram(micro, title="Reliability diagram (micro, 17 labels)")
    root = ET.fromstring(svg)
    assert len(_with_class(root, "g", "interval")) == 5
    _assert_whiskers(root, micro, expected)


def test_quantile_bins_with_weights_use_the_unweighted_counts() -> None:
    rng = np.random.default_rng(5)
    p = rng.uniform(size=400)
    y = (rng.uniform(size=400) < p).astype(int)
    w = rng.integers(0, 4, 400).astype(float)
    report = calibration_report(p, y, n_bins=7, binning="quantile", sample_weights=w,
                                confidence_level=0.9, bootstrap=ONE_RESAMPLE)
    expected = _scipy_intervals(p, y, report, 0.9)  # counts every sample, weight or not
    assert all(iv is not None for iv in expected)
    _assert_report_intervals(report, expected)
    # The weights do move the bars (weighted accuracy), not the intervals (k / n).
    weighted, unweighted = [], []
    for i, b in enumerate(report.bins):
        inside = ((p > b.lower) & (p <= b.upper)) | ((p == b.lower) & (i == 0))
        weighted.append(np.average(y[inside], weights=w[inside]))
        unweighted.append(y[inside].mean())
    np.testing.assert_allclose([b.accuracy for b in report.bins], weighted, rtol=0, atol=1e-12)
    assert np.abs(np.subtract(weighted, unweighted)).max() > 1e-3
    _assert_whiskers(ET.fromstring(reliability_diagram(report)), report, expected)


def test_output_is_deterministic_and_plain_diagram_unchanged_without_overlays() -> None:
    z, y = _multiclass(200, 3, seed=1)
    kw: dict[str, Any] = {"logits": z, "labels": y, "n_bins": 6}
    full = {"confidence_level": 0.95, "bootstrap": ONE_RESAMPLE, "estimators": ["smooth_ece"]}
    # Two reports of the same data, drawn twice each: one text.
    svgs = {reliability_diagram(calibration_report(**kw, **full)) for _ in range(2)}
    assert len(svgs) == 1
    drawn = ET.fromstring(svgs.pop())
    assert _with_class(drawn, "g", "interval") and _with_class(drawn, "polyline", "smooth")
    plain = ET.fromstring(reliability_diagram(calibration_report(**kw)))
    assert not _with_class(plain, "g", "interval")
    assert not _with_class(plain, "polyline", "smooth")
    texts = [t.text or "" for t in plain.iter(f"{SVG}text")]
    assert not any("smooth" in t or "Clopper" in t for t in texts)
    # The overlays add shapes, they change none of the bins'.
    for cls in ("bar", "gap", "hist"):
        assert [ET.tostring(e) for e in _with_class(plain, "rect", cls)] == [
            ET.tostring(e) for e in _with_class(drawn, "rect", cls)
        ]


def test_bad_overlays_of_a_report_are_named() -> None:
    """A result built by hand with a drawn bar's interval missing or not finite, or a
    smooth curve with NaN, is refused (no NaN reaches a coordinate), naming the result."""
    report = calibration_report([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], n_bins=2,
                                confidence_level=0.95, bootstrap=ONE_RESAMPLE,
                                estimators=["smooth_ece"])
    reliability_diagram(report)  # the report itself is fine

    def with_interval(iv: tuple[float, float] | None) -> CalibrationResult:
        bins = (report.bins[0], dataclasses.replace(report.bins[1], accuracy_interval=iv))
        return dataclasses.replace(report, bins=bins)

    for iv in [(float("nan"), 1.0), None, (0.9, 0.1), (0.1, 1.5)]:
        with pytest.raises(InputError) as err:
            reliability_diagram(with_interval(iv))
        assert err.value.field == "result" and err.value.position == (1,), iv
        assert err.value.kind == "out_of_range"
    with pytest.raises(InputError) as err:
        reliability_diagrams([report, with_interval(None)], ["a", "b"])
    assert err.value.field == "results[1]" and err.value.position == (1,)
    e = report.estimates
    assert e is not None and e.smooth_curve is not None
    curve = dataclasses.replace(e.smooth_curve,
                                accuracy=(float("nan"), *e.smooth_curve.accuracy[1:]))
    bad = dataclasses.replace(report, estimates=dataclasses.replace(e, smooth_curve=curve))
    with pytest.raises(InputError) as err:
        reliability_diagram(bad)
    assert err.value.field == "result" and "smooth curve" in err.value.message
    with pytest.raises(InputError) as err:
        reliability_diagrams([bad], ["a"])
    assert err.value.field == "results[0]"


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="librsvg2-bin not installed")
def test_librsvg_renders_the_diagrams_without_complaint(tmp_path: Path) -> None:
    """A real SVG renderer (librsvg) accepts the documents: no warning, and a PNG of the
    declared size."""
    z, y = _multiclass(400, 4, seed=2)
    report = calibration_report(logits=z, labels=y, n_bins=10, confidence_level=0.95,
                                bootstrap=ONE_RESAMPLE, estimators=["smooth_ece"])
    single = reliability_diagram(report, title="4 classes & <more>")
    assert 'class="interval"' in single and 'class="smooth"' in single
    grid = reliability_diagrams([report] * 5, [f"label {j}" for j in range(5)])
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
    """A multi-class report with ``confidence_level`` and ``smooth_ece`` carries scipy's
    intervals and relplot's curve of the top-label confidences, and both renderers draw
    them with no argument but the report."""
    z, y = _multiclass(300, 4, seed=3)
    full = calibration_report(logits=z, labels=y, n_bins=8, confidence_level=0.9,
                              bootstrap=ONE_RESAMPLE, estimators=["smooth_ece"])
    assert full.intervals is not None and full.intervals.confidence_level == 0.9
    conf, outcome = _top_label(z, y)
    expected = _scipy_intervals(conf, outcome, full, 0.9)
    _assert_report_intervals(full, expected)
    for root in (ET.fromstring(reliability_diagram(full)),
                 _with_class(ET.fromstring(reliability_diagrams([full], ["a"])), "g",
                             "panel")[0]):
        _assert_whiskers(root, full, expected)
        _assert_relplot_curve(root, full, conf, outcome)
        texts = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
        assert "90% Clopper–Pearson interval" in texts
