"""How the DICOMweb routes answer: media types, DICOM JSON and multipart/related responses, and
the OpenAPI documentation of their answers."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import Response, StreamingResponse

from studyshare.plumbing.http import problem_responses
from studyshare.study_store.adapters.multipart import MultipartAnswer

DICOM_JSON = "application/dicom+json"
ANY_JSON: dict[str, Any] = {"type": "array", "items": {"type": "object"}}


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status_code=status, media_type=DICOM_JSON)


def multipart_response(answer: MultipartAnswer) -> Response:
    """A multipart answer: whole with a length, or streamed."""
    if answer.stream is not None:
        return StreamingResponse(answer.stream, media_type=answer.media_type)
    return Response(answer.body, media_type=answer.media_type)


STOW_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every instance stored",
        "content": {DICOM_JSON: {"schema": {"type": "object"}}},
    },
    202: {
        "description": "Some instances failed",
        "content": {DICOM_JSON: {"schema": {"type": "object"}}},
    },
    409: {
        "description": "No instance stored",
        "content": {DICOM_JSON: {"schema": {"type": "object"}}},
    },
    **problem_responses(400, 401, 403, 413, 415),
}
STOW_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}},
    }
}
MULTIPART_DICOM = {
    200: {
        "description": "multipart/related; type=application/dicom",
        "content": {"multipart/related": {"schema": {"type": "string", "format": "binary"}}},
    },
    **problem_responses(401, 403, 404),
}
METADATA = {
    200: {"description": "DICOM JSON metadata", "content": {DICOM_JSON: {"schema": ANY_JSON}}},
    **problem_responses(401, 403, 404),
}
RENDERED = {
    200: {
        "description": "PNG or JPEG",
        "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    **problem_responses(401, 403, 404, 406),
}
