"""POST /v1/calibration and /v1/calibration/diagram."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Response

from app.api.body import JsonBody, SettingsDep, parse_request
from app.api.limits import check_answer_elements, request_elements
from app.api.openapi import json_request_body
from app.api.schemas.calibration import (
    CalibrationData,
    CalibrationRequest,
    CalibrationResponse,
)
from app.api.schemas.common import ERROR_RESPONSES, option_values
from app.api.states import answer
from app.settings import Settings
from xentropy._validation import InputError
from xentropy.calibration import (
    CALIBRATION_PARAMS,
    CalibrationResult,
    calibration_bootstrap_work,
    calibration_report,
)
from xentropy.calibration.diagram import MAX_PANELS, reliability_diagram, reliability_diagrams
from xentropy.calibration.slices import MAX_GROUPS

router = APIRouter(prefix="/v1/calibration", tags=["calibration"], responses=ERROR_RESPONSES)


def _check_bins(req: CalibrationData, settings: Settings) -> None:
    """This service's bounds on the bins (XENTROPY_MAX_BINS, XENTROPY_MAX_CLASS_BINS): the
    work is bounded by the input, and these bound the answer (every bin is listed).

    With ``groups`` (G distinct values), every group has its classes' (or labels') bins:
    G × classes × bins is bounded by XENTROPY_MAX_CLASS_BINS, and the answer's bins (six
    numbers each, n_bins per report: with ``multilabel`` C + 1 reports per group) count
    towards the element limit with the request's arrays (413 beyond)."""
    n_bins = getattr(req, "n_bins")  # noqa: B009 (an option field from the table)
    multilabel = bool(getattr(req, "multilabel"))  # noqa: B009
    scores = req.probabilities if req.probabilities is not None else req.logits
    n_classes = 2 if scores is None or scores.ndim == 1 else int(scores.shape[1])
    if n_bins > settings.max_bins:
        raise InputError(
            "n_bins", f"expected at most {settings.max_bins} bins (this service's "
            f"XENTROPY_MAX_BINS), got {n_bins}", kind="out_of_range",
        )
    n_groups = 1
    if req.groups is not None:
        # At most one group per row; the values are sorted to count them only when that
        # bound does not already settle both checks (the library sorts them once more).
        n_groups = min(req.groups.shape[0], MAX_GROUPS + 1)
        if not _within(req, settings, n_groups, n_classes, n_bins, multilabel):
            n_groups = min(int(np.unique(req.groups).shape[0]), MAX_GROUPS + 1)
    if n_groups * n_classes * n_bins > settings.max_class_bins:
        shown = f"{n_classes} × {n_bins}" if req.groups is None else (
            f"{n_groups} groups × {n_classes} × {n_bins}")
        raise InputError(
            "n_bins", f"expected {'groups × ' if req.groups is not None else ''}classes × "
            f"bins of at most {settings.max_class_bins} (this service's "
            f"XENTROPY_MAX_CLASS_BINS), got {shown}", kind="out_of_range",
        )
    if req.groups is not None or multilabel:
        check_answer_elements(req, settings, _answer_elements(req, n_groups, n_classes,
                                                              n_bins, multilabel))
    if getattr(req, "mode") == "classwise":  # noqa: B009
        # Every class's every bin is in the answer then (8 numbers each, with intervals).
        check_answer_elements(req, settings, CLASS_BIN_NUMBERS * n_classes * n_bins)


#: Numbers per class-wise bin in an answer (edges, count, weight, means, interval).
CLASS_BIN_NUMBERS = 8


def _answer_elements(req: CalibrationData, n_groups: int, n_classes: int, n_bins: int,
                     multilabel: bool) -> int:
    """Numbers of a sliced answer: per report its bins (six numbers each), its per-class
    entries and its scalars (with ``mode: "classwise"``, every class's bins too, eight
    numbers each); C + 2 reports (labels, micro, top) with ``multilabel``, one more set
    per group."""
    reports = (n_classes + 2 if multilabel else 1) * (
        1 + (n_groups if req.groups is not None else 0))
    class_bins = 8 * n_classes * n_bins if getattr(req, "mode", None) == "classwise" else 0
    return reports * (6 * n_bins + 6 * n_classes + 16 + class_bins)


def _within(req: CalibrationData, settings: Settings, n_groups: int, n_classes: int,
            n_bins: int, multilabel: bool) -> bool:
    return (n_groups * n_classes * n_bins <= settings.max_class_bins
            and request_elements(req) + _answer_elements(
                req, n_groups, n_classes, n_bins, multilabel) <= settings.max_elements)


def _check_bootstrap(req: CalibrationData, settings: Settings) -> None:
    """This service's bound on the bootstrap (XENTROPY_MAX_BOOTSTRAP_WORK): its work grows
    with the replicates, not with the input alone (smooth_ece costs about 2 ms a replicate
    whatever N, and every group and label is a run of its own), so it is bounded before any
    replicate is drawn."""
    level = getattr(req, "confidence_level")  # noqa: B009 (an option field from the table)
    if level is None:
        return
    options = option_values(req, CALIBRATION_PARAMS)
    scores = req.probabilities if req.probabilities is not None else req.logits
    n_rows = 0 if scores is None else int(scores.shape[0])
    multilabel = bool(options["multilabel"]) and scores is not None and scores.ndim == 2
    work = calibration_bootstrap_work(
        n_rows, n_labels=int(scores.shape[1]) if multilabel else None,  # type: ignore[union-attr]
        groups=req.groups, confidence_level=level, bootstrap=options["bootstrap"],
        estimators=options["estimators"])
    limit = settings.max_bootstrap_work
    if work > limit:
        resamples = CALIBRATION_PARAMS["bootstrap"].check(
            dict(options["bootstrap"] or {}), "bootstrap")["n_resamples"]
        per = -(-work // resamples)  # the work of one replicate
        raise InputError(
            "bootstrap", f"expected at most {limit} sample-replicates of bootstrap work (this "
            f"service's XENTROPY_MAX_BOOTSTRAP_WORK), got {work}: {resamples} replicates of "
            f"{per} each; " + (f"ask for at most {limit // per} resamples, fewer groups or "
                               "estimators, or send fewer rows" if limit >= per else
                               "not even one replicate fits: ask for fewer groups or "
                               "estimators, or send fewer rows"),
            position=("n_resamples",), kind="out_of_range")


def _report(req: CalibrationData, settings: Settings) -> CalibrationResult:
    _check_bins(req, settings)
    _check_bootstrap(req, settings)
    return calibration_report(
        req.probabilities, req.labels, logits=req.logits, targets=req.targets,
        groups=req.groups, sample_weights=req.sample_weights,
        **option_values(req, CALIBRATION_PARAMS),
    )


@router.post(
    "",
    name="report",
    summary="Calibration statistics",
    response_model=CalibrationResponse,
    openapi_extra=json_request_body(CalibrationRequest),
)
def report(body: JsonBody, settings: SettingsDep) -> Response:
    """Accuracy, mean confidence, NLL, Brier, ECE/MCE/RMSCE/ACE, every reliability bin,
    per-class statistics and, with logits, temperature scaling."""
    req = parse_request(CalibrationRequest, body, settings)
    return answer(_report(req, settings))


@router.post(
    "/diagram",
    name="diagram",
    summary="Reliability diagram (SVG)",
    response_class=Response,
    responses={
        200: {
            "description": "An SVG document (UTF-8 text).",
            "content": {"image/svg+xml": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    openapi_extra=json_request_body(CalibrationRequest),
)
def diagram(body: JsonBody, settings: SettingsDep) -> Response:
    """The same body as /v1/calibration; answers a reliability diagram with the confidence
    histogram under it and the ECE written on it. Multi-label input: small multiples, one
    panel per label ("label k"), for at most 16 labels; with more, the diagram of the
    micro report (all pairs pooled). With `groups`, the diagram of all the rows."""
    req = parse_request(CalibrationRequest, body, settings)
    result = _report(req, settings)
    labels = result.per_label
    if labels is not None and len(labels) <= MAX_PANELS:
        svg = reliability_diagrams(labels, [f"label {k}" for k in range(len(labels))])
    else:
        svg = reliability_diagram(result)
    return Response(svg, media_type="image/svg+xml")
