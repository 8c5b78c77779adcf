"""The OpenAPI document of the public API, built from the same profile and schema the mock enforces."""

from __future__ import annotations

from .validation import request_schema

FAILURE_SCHEMA = {
    "type": "object",
    "required": ["status", "error"],
    "properties": {
        "status": {"type": "string", "enum": ["FAILURE"]},
        "error": {"type": "string", "description": "Names each field and the rule it broke."},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "rule", "message"],
                "properties": {"field": {"type": "string"}, "rule": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def job_schema(profile: dict) -> dict:
    return {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["PENDING", "SUCCESS", "FAILURE"]},
            "id": {"type": "string"},
            "download_urls": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                              "maxItems": profile["limits"]["samples"]["max"]},
            "error": {"type": "string"},
            "batch_id": {"type": "string"},
        },
        # So that tools that answer from the document (Prism, say) answer like the mock, not "string".
        "example": {"status": "SUCCESS", "id": "0d3c1f52-7a5e-4f4b-9a0e-2f6d8b1c9e47",
                    "download_urls": ["http://127.0.0.1:8080/files/6f1d2c3b4a5948e7b6a5c4d3e2f1a0b9"]},
    }


def _json(schema_ref: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema_ref}}}}


def failure_schema(profile: dict) -> dict:
    """A refusal's body: its text under the profile's ``rejection_text_key``."""
    key = profile.get("rejection_text_key", "error")
    if key == "error":
        return FAILURE_SCHEMA
    properties = {k: v for k, v in FAILURE_SCHEMA["properties"].items() if k != "error"}
    return {**FAILURE_SCHEMA, "required": ["status", key], "properties": {**properties, key: FAILURE_SCHEMA["properties"]["error"]}}


def _job_responses(profile: dict, errors: dict[str, str], pending: str) -> dict:
    codes = profile["http_status"]
    responses: dict[str, dict] = {}
    for kind, text in ((pending, "PENDING"), ("success", "SUCCESS"), ("job_failure", "FAILURE of the job")):
        code = str(codes[kind])
        if code in responses:
            responses[code]["description"] += f", {text}"
        else:
            responses[code] = _json("#/components/schemas/JobStatus", text)
    for kind, text in errors.items():
        code = str(codes.get(kind, {"method_not_allowed": 405}.get(kind, 400)))
        responses.setdefault(code, _json("#/components/schemas/Failure", text))
    return responses


def openapi_document(profile: dict, server_url: str | None = None) -> dict:
    image = {"description": "The image", "content": {
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/webp": {"schema": {"type": "string", "format": "binary"}}}}
    missing = {"not_found": "No such image", "image_not_ready": "The job is not SUCCESS yet",
               "image_expired": "The URL expired"}
    image_responses = {"200": image}
    for kind, text in missing.items():
        image_responses.setdefault(str(profile["http_status"][kind]), _json("#/components/schemas/Failure", text))
    doc = {
        "openapi": "3.0.3",
        "info": {
            "title": "ImagePipeline Stable Diffusion 3.5 (offline twin)",
            "version": "v1",
            "description": "The public API as served by the mock. Limits marked assumed come from the mock's profile.",
        },
        "paths": {
            "/sd3_5/v1": {
                "post": {
                    "operationId": "submit",
                    "summary": "Text to image with Stable Diffusion 3.5",
                    "security": [{"ApiKey": []}],
                    "requestBody": {"required": True, "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/GenerationRequest"}}}},
                    "responses": _job_responses(profile, {
                        "invalid": "Invalid body: every violated rule, by field",
                        "unauthorized": "Missing or unknown API-Key",
                        "no_credits": "The key has no credits left for this job (mock: --credits)",
                        "body_too_large": "Body over the size cap"}, "submit_pending"),
                }
            },
            "/sd3_5/v1/status/{id}": {
                "get": {
                    "operationId": "status",
                    "summary": "The status of a job",
                    "security": [{"ApiKey": []}],
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": _job_responses(profile, {
                        "unauthorized": "Missing or unknown API-Key",
                        "not_found": "No job with this id for this key"}, "poll_pending"),
                }
            },
            "/files/{token}": {
                "get": {
                    "operationId": "downloadOpaque", "summary": "An image behind an opaque download URL",
                    "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": image_responses,
                }
            },
            "/images/{name}": {
                "get": {
                    "operationId": "downloadDirect", "summary": "An image behind a direct_link .png URL",
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": image_responses,
                }
            },
        },
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "API-Key"}},
            "schemas": {
                "GenerationRequest": request_schema(profile),
                "JobStatus": job_schema(profile),
                "Failure": failure_schema(profile),
            },
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
