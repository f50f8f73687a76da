"""POST /v1/calibration and /v1/calibration/diagram."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.body import JsonBody, SettingsDep, parse_request
from app.api.diagram import reliability_diagram
from app.api.openapi import json_request_body
from app.api.schemas.calibration import (
    CalibrationData,
    CalibrationRequest,
    CalibrationResponse,
)
from app.api.schemas.common import ERROR_RESPONSES
from app.api.states import answer
from xentropy.calibration import CALIBRATION_PARAMS, CalibrationResult, calibration_report

router = APIRouter(prefix="/v1/calibration", tags=["calibration"], responses=ERROR_RESPONSES)


def _report(req: CalibrationData) -> CalibrationResult:
    return calibration_report(
        req.probabilities, req.labels, logits=req.logits, sample_weights=req.sample_weights,
        **{name: getattr(req, name) for name in CALIBRATION_PARAMS},
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
    return answer(_report(req), CalibrationResponse)


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
    histogram under it and the ECE written on it."""
    req = parse_request(CalibrationRequest, body, settings)
    return Response(reliability_diagram(_report(req)), media_type="image/svg+xml")
