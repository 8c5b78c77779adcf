"""The OpenAPI document of the public API, built from the same profile and schema the mock enforces.

It follows the profile it is built from: every status code an operation can answer under that profile
(a variant's 202, 422 or 503 included), the ``Retry-After`` of a rate-limited answer once rate limits are set,
and the image type each download serves. Generators read it literally, so it is written for them too: the
downloads say they need no key (``security: []``), an image body is also described as generic binary (the
one binary type every generator knows), optional fields carry no ``default`` keyword (openapi-typescript
makes such a field required), and patterns mean the same under ``re.match`` and ``re.search``.
"""

from __future__ import annotations

from .images import CONTENT_TYPES
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

# The answers of each operation, as kinds of the profile's ``http_status`` with what they mean. Job kinds
# carry a job's body; the others a FAILURE body (errors.py's kinds).
JOB_ANSWERS = {"submit_pending": "PENDING", "poll_pending": "PENDING", "success": "SUCCESS",
               "job_failure": "FAILURE of the job"}
REFUSALS = {
    "invalid": "Invalid request: every violated rule, by field",
    "unauthorized": "Missing or unknown API-Key",
    "no_credits": "The key has no credits left for this job (mock: --credits)",
    "rate_limited": "Over the key's rate limit (profile rate_limits): retry after Retry-After seconds",
    "unsupported_media_type": "The body's Content-Type is not application/json",
    "body_too_large": "Body over the size cap",
    "not_found": "No such job or image for this key",
    "image_not_ready": "The job is not SUCCESS yet",
    "image_expired": "The URL expired",
}
STATUS_REFUSALS = ("invalid", "unauthorized", "rate_limited", "not_found")
DOWNLOAD_REFUSALS = ("invalid", "not_found", "image_not_ready", "image_expired")
# Kinds that no operation answers: 405 is for the methods a path does not have; 409 is the control plane's.
NO_OPERATION = {"method_not_allowed", "conflict"}
# The submit, the one operation with a body and the only one a new kind of refusal can be about, answers
# every other kind the profile names: a kind added later (the request's Content-Type, say) is documented
# without a change here.
SUBMIT_NEVER = set(JOB_ANSWERS) | set(DOWNLOAD_REFUSALS[2:]) | {"not_found"} | NO_OPERATION

RETRY_AFTER = {"Retry-After": {"description": "Whole seconds until the key may send again.", "required": True,
                               "schema": {"type": "integer", "minimum": 1}}}
FAILURE_REF = {"$ref": "#/components/schemas/Failure"}
JOB_REF = {"$ref": "#/components/schemas/JobStatus"}


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


def failure_schema(profile: dict) -> dict:
    """A refusal's body: its text under the profile's ``rejection_text_key``."""
    key = profile.get("rejection_text_key", "error")
    if key == "error":
        return FAILURE_SCHEMA
    properties = {k: v for k, v in FAILURE_SCHEMA["properties"].items() if k != "error"}
    return {**FAILURE_SCHEMA, "required": ["status", key], "properties": {**properties, key: FAILURE_SCHEMA["properties"]["error"]}}


def rate_limited(profile: dict) -> bool:
    """Whether the profile sets a rate limit, so that submits and status reads can be refused with Retry-After."""
    return any(value is not None for value in (profile.get("rate_limits") or {}).values())


# Kinds a profile setting turns on: documented only under a profile that turns them on, as the twin answers
# them only then. (L32's, the request's Content-Type, is switched by require_json_content_type.)
SWITCHED = {
    "rate_limited": rate_limited,
    "unsupported_media_type": lambda profile: bool(profile.get("require_json_content_type")),
}


def job_answers(profile: dict, submit: bool) -> list[str]:
    """The job kinds an operation answers: a POST whose profile never finishes a job at once answers only
    PENDING, one that always does never answers it."""
    if not submit:
        return ["poll_pending", "success", "job_failure"]
    finished = profile.get("submit", {}).get("finished", "lifecycle")
    return {"never": ["submit_pending"], "always": ["success", "job_failure"]}.get(
        finished, ["submit_pending", "success", "job_failure"])


def submit_refusals(profile: dict) -> list[str]:
    return [kind for kind in profile["http_status"] if kind not in SUBMIT_NEVER and kind != "pending"]


def responses(profile: dict, answers: list[str], refusals: list[str], success: dict | None = None) -> dict:
    """The responses object: one entry per status code, whatever kinds share it (a variant may answer two
    kinds with one code: their descriptions are joined, and their bodies are either schema). ``success``: the
    200 of a download (an image), which no profile moves."""
    codes = profile["http_status"]
    refusals = [kind for kind in refusals if kind not in SWITCHED or SWITCHED[kind](profile)]
    by_code: dict[str, list[str]] = {}
    if success is not None:
        by_code["200"] = []
    for kind in [*answers, *refusals]:
        if kind in codes:
            by_code.setdefault(str(codes[kind]), []).append(kind)
    out = {}
    for code, kinds in sorted(by_code.items()):
        texts = [JOB_ANSWERS.get(kind) or REFUSALS.get(kind) or kind.replace("_", " ").capitalize() for kind in kinds]
        if success is not None and code == "200":
            out[code] = success
            continue
        schemas = ([JOB_REF] if any(kind in JOB_ANSWERS for kind in kinds) else []) + \
                  ([FAILURE_REF] if any(kind not in JOB_ANSWERS for kind in kinds) else [])
        out[code] = {"description": "; ".join(dict.fromkeys(texts)), "content": {
            "application/json": {"schema": schemas[0] if len(schemas) == 1 else {"anyOf": schemas}}}}
        if all(kind == "rate_limited" for kind in kinds):
            out[code]["headers"] = RETRY_AFTER
        elif "rate_limited" in kinds:  # shared with a kind that sends none: there, but not always
            out[code]["headers"] = {"Retry-After": {**RETRY_AFTER["Retry-After"], "required": False}}
    return out


def image_response(profile: dict, fmt_key: str) -> dict:
    """A download's 200: the image type the profile serves there, and the same bytes as
    ``application/octet-stream``, the one binary type every generator knows (openapi-python-client drops a
    response with only ``image/*`` types); the mock always sends the image type."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    content_type = CONTENT_TYPES[profile["urls"][fmt_key]]
    return {"description": f"The image ({content_type})", "content": {content_type: binary, "application/octet-stream": binary}}


def published_request_schema(profile: dict) -> dict:
    """The request schema as published: the validator's, with each optional field's ``default`` moved into
    its description (openapi-typescript makes a property with a ``default`` required in the type of a
    component schema, so a request without width or height would not compile)."""
    schema = request_schema(profile)
    required = set(schema["required"])
    properties = {}
    for name, spec in schema["properties"].items():
        if "default" in spec and name not in required:
            spec = {k: v for k, v in spec.items() if k != "default"}
            spec["description"] = f"{spec['description'].rstrip('.')}; {schema['properties'][name]['default']} when not sent."
        properties[name] = spec
    return {**schema, "properties": properties}


def openapi_document(profile: dict, server_url: str | None = None) -> dict:
    statuses = STATUS_REFUSALS
    downloads = list(DOWNLOAD_REFUSALS)
    doc = {
        "openapi": "3.0.3",
        "info": {
            "title": "ImagePipeline Stable Diffusion 3.5 (offline twin)",
            "version": "v1",
            "description": "The public API as served by the mock. Limits marked assumed come from the mock's profile.",
            "license": {"name": "MIT", "url": "https://opensource.org/licenses/MIT"},
        },
        "paths": {
            "/sd3_5/v1": {
                "post": {
                    "operationId": "submit",
                    "summary": "Text to image with Stable Diffusion 3.5",
                    "security": [{"ApiKey": []}],
                    "requestBody": {"required": True, "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/GenerationRequest"}}}},
                    "responses": responses(profile, job_answers(profile, submit=True), submit_refusals(profile)),
                }
            },
            "/sd3_5/v1/status/{id}": {
                "get": {
                    "operationId": "status",
                    "summary": "The status of a job",
                    "security": [{"ApiKey": []}],
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": responses(profile, job_answers(profile, submit=False), list(statuses)),
                }
            },
            "/files/{token}": {
                "get": {
                    "operationId": "downloadOpaque", "summary": "An image behind an opaque download URL",
                    "security": [],  # a download URL is its own credential: no API-Key
                    "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": responses(profile, [], downloads, image_response(profile, "opaque_format")),
                }
            },
            "/images/{name}": {
                "get": {
                    "operationId": "downloadDirect", "summary": "An image behind a direct_link download URL",
                    "security": [],
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": responses(profile, [], downloads, image_response(profile, "direct_link_format")),
                }
            },
        },
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "API-Key"}},
            "schemas": {
                "GenerationRequest": published_request_schema(profile),
                "JobStatus": job_schema(profile),
                "Failure": failure_schema(profile),
            },
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
