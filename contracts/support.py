"""What the contract tests share: the cheapest valid request, the rejection check, hypothesis
settings per target, and job transcripts (one job, walked to its end, every answer kept)."""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

from sd35_twin.client import APIError, GenerationRequest, ImagePipelineError, InvalidRequestError, JobFailedError, JobStatus
from sd35_twin.client.models import FIELDS

from .targets import LIVE, MOCK, SUBMIT_PATH, URL

OMIT = object()  # a field left out of the body

#: The cheapest valid request: one sample, the page's own example values, documented fields only
#: (width and height left to their documented default of 1024).
CHEAPEST: dict[str, Any] = {
    "prompt": "a red circle on a white background (contract check)",
    "negative_prompt": "blurry",
    "num_inference_steps": 4,
    "samples": 1,
    "guidance_scale": 0.0,
}

#: The options job: every documented optional field, two samples (the documented maximum).
OPTIONS_BODY: dict[str, Any] = dict(
    CHEAPEST,
    samples=2,
    direct_link=True,
    file_prefix="contracts_",
    batch_id="contracts-batch-1",
    queued_image_urls=True,
    webhook="https://example.com/sd35-contracts/webhook",
)

REQUIRED = ("prompt", "negative_prompt", "num_inference_steps", "samples", "guidance_scale")

# --- hypothesis: thorough on the mock, a handful of examples on live -------------------------------

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SETTINGS = {
    MOCK: settings(max_examples=100, **_COMMON),
    URL: settings(max_examples=50, **_COMMON),
    # live: few examples, no shrinking (each shrink step is another request), same examples every run
    LIVE: settings(max_examples=5, derandomize=True, database=None, phases=(Phase.explicit, Phase.generate),
                   **_COMMON),
}


def target_settings(kind: str, examples: int | None = None) -> settings:
    """The hypothesis settings for a kind of target; ``examples`` (``--contracts-examples``) overrides.
    A property contract applies them from its ``contract`` fixture (``@contract.settings``), as the
    target is known only once pytest is configured."""
    base = _SETTINGS[kind]
    return settings(base, max_examples=examples) if examples else base


# --- bodies -------------------------------------------------------------------------------------

def body(**overrides: Any) -> dict[str, Any]:
    """CHEAPEST with fields changed; ``OMIT`` leaves a field out."""
    out = dict(CHEAPEST)
    for name, value in overrides.items():
        if value is OMIT:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def as_request(data: dict[str, Any]) -> GenerationRequest:
    """The client's request object for exactly this JSON body (wrong types and nulls included)."""
    known: dict[str, Any] = {name: None for name in FIELDS}
    extra: dict[str, Any] = {}
    for name, value in data.items():
        if name in known and value is not None:
            known[name] = value
        else:
            extra[name] = value   # unknown fields, and explicit nulls, go as they are
    return GenerationRequest(**known, extra=extra)


def describe(answer: JobStatus | None, code: int | None) -> str:
    if answer is None:
        return f"HTTP {code}"
    return f"HTTP {code} {answer.status.value} {json.dumps(dict(answer.raw), default=str)[:200]}"


def expect_rejected(contract, row: str, data: dict[str, Any], *, fields: tuple[str, ...] = (),
                    error_type: type = InvalidRequestError, client=None, what: str | None = None) -> APIError:
    """Submit ``data`` through the client; it must be refused with ``error_type`` naming ``fields``.

    Whatever the target answered is observed for ``row``; an accepted request fails the test (and,
    on live, counted as a job under the cap).
    """
    what = what or ", ".join(f"{k}={v!r}"[:60] for k, v in data.items() if CHEAPEST.get(k, OMIT) != v) or "body"
    api = client or contract.client
    try:
        answer = api.submit(as_request(data), validate=False)
    except APIError as err:
        text = json.dumps(err.body, default=str) if not isinstance(err.body, str) else err.body
        contract.observe(row, {"sent": what, "http_status": err.status_code,
                               "fields": list(getattr(err, "fields", ())), "body": text[:300]})
        assert isinstance(err, error_type), (
            f"{what}: expected {error_type.__name__}, got {type(err).__name__} (HTTP {err.status_code}): {err}")
        for name in fields:
            named = name in getattr(err, "fields", ()) or name in text
            assert named, f"{what}: refused (HTTP {err.status_code}) but {name!r} is not named: {text[:200]}"
        return err
    except ImagePipelineError as err:
        contract.observe(row, {"sent": what, "error": f"{type(err).__name__}: {err}"})
        raise AssertionError(f"{what}: expected a rejection, got {type(err).__name__}: {err}") from err
    ex = contract.last("POST", SUBMIT_PATH)
    code = ex.status if ex else None
    contract.observe(row, {"sent": what, "accepted": True, "http_status": code, "status": answer.status.value})
    pytest.fail(f"{what} was accepted: {describe(answer, code)}")


def submit_accepted(contract, row: str, data: dict[str, Any]) -> JobStatus:
    """Submit ``data``; it must create a job (a 2xx PENDING or SUCCESS answer with an id)."""
    try:
        answer = contract.client.submit(as_request(data), validate=False)
    except APIError as err:
        contract.observe(row, {"http_status": err.status_code, "refused": str(err)[:300]})
        pytest.fail(f"a valid request was refused: HTTP {err.status_code}: {err}")
    ex = contract.last("POST", SUBMIT_PATH)
    contract.observe(row, {"http_status": ex.status if ex else None, "status": answer.status.value})
    assert answer.status.value in ("PENDING", "SUCCESS"), f"the job was not created: {describe(answer, ex.status)}"
    assert answer.id, f"no job id: {describe(answer, ex.status)}"
    return answer


# --- images -------------------------------------------------------------------------------------

def image_info(data: bytes) -> tuple[str, tuple[int, int]] | None:
    """(format, (width, height)) of an image, or None if the bytes are not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return str(img.format), tuple(img.size)  # type: ignore[return-value]
    except (UnidentifiedImageError, OSError, ValueError):
        return None


# --- transcripts --------------------------------------------------------------------------------

@dataclass
class Step:
    what: str
    url: str | None = None
    http_status: int | None = None
    body: Any = None
    content_type: str | None = None
    image: tuple[str, tuple[int, int]] | None = None
    file_name: str | None = None
    error: str | None = None

    @classmethod
    def from_exchange(cls, what: str, ex) -> "Step":
        if ex is None:
            return cls(what, error="no exchange recorded")
        resp = ex.response
        body = None
        ctype = resp.headers.get("Content-Type") if resp is not None else None
        if resp is not None and ctype and "json" in ctype:
            try:
                body = resp.json()
            except ValueError:
                body = resp.text[:500]
        return cls(what, url=ex.url, http_status=ex.status, body=body, content_type=ctype, error=ex.error)


@dataclass
class JobTranscript:
    """One job walked from submit to its end: every answer, each image, and two re-reads after the end."""

    request: dict
    submit: Step | None = None
    first: JobStatus | None = None
    early_downloads: list[Step] = field(default_factory=list)   # URLs read while PENDING
    polls: list[tuple[Step, JobStatus]] = field(default_factory=list)
    final: JobStatus | None = None
    after: list[tuple[Step, JobStatus]] = field(default_factory=list)
    downloads: list[Step] = field(default_factory=list)
    error: str | None = None

    @property
    def answers(self) -> list[tuple[Step, JobStatus]]:
        out = [(self.submit, self.first)] if self.first is not None else []
        return out + self.polls + self.after

    @property
    def saw_pending(self) -> bool:
        return self.first is not None and self.first.is_pending

    def require_final(self) -> JobStatus:
        if self.final is None:
            pytest.fail(f"the job did not reach a final state: {self.error or 'no answer'}")
        return self.final

    def require_success(self) -> JobStatus:
        final = self.require_final()
        if not final.is_success:
            pytest.fail(f"the job ended {final.status.value}: {final.error or dict(final.raw)}")
        return final


def run_job(run, data: dict[str, Any], *, early_downloads: bool = False, downloads: bool = True) -> JobTranscript:
    """Create one job and record its whole life. On a mock with a control plane the mock (if the
    suite owns it) is reset and set to keep the job PENDING until its first status poll (so PENDING
    is always seen) and not to fail it at random (the contract that asked for the job puts that back)."""
    if run.target.has_control:
        run.reset()
        run.control.configure(lifecycle="polls", pending_polls=1, failure_rate=0.0)
    client = run.client()
    t = JobTranscript(request=dict(data))
    session = run.session
    try:
        try:
            t.first = client.submit(as_request(data), validate=False)
        finally:
            t.submit = Step.from_exchange("submit", session.last("POST", SUBMIT_PATH))
        if early_downloads and t.first.is_pending:
            for url in t.first.download_urls:
                t.early_downloads.append(_download(client, session, url, "early download"))

        def seen(status: JobStatus) -> None:
            t.polls.append((Step.from_exchange("status", session.last("GET", f"/status/{status.id}")), status))

        try:
            t.final = client.wait(t.first, on_update=seen)
        except JobFailedError as exc:
            t.final = exc.status
        for _ in range(2):
            status = client.status(t.first.id)
            t.after.append((Step.from_exchange("status after the end",
                                               session.last("GET", f"/status/{t.first.id}")), status))
        if downloads and t.final is not None and t.final.is_success:
            for url in t.final.download_urls:
                t.downloads.append(_download(client, session, url, "download"))
    except ImagePipelineError as exc:
        t.error = f"{type(exc).__name__}: {exc}"
    return t


def _download(client, session, url: str, what: str) -> Step:
    with tempfile.TemporaryDirectory(prefix="sd35-contracts-") as tmp:
        try:
            paths = client.download([url], tmp)
        except ImagePipelineError as exc:
            step = Step.from_exchange(what, session.last("GET"))
            step.url = url
            step.error = f"{type(exc).__name__}: {exc}"
            return step
        step = Step.from_exchange(what, session.last("GET"))
        data = Path(paths[0]).read_bytes()
        step.image = image_info(data)
        resp = session.last("GET").response
        disposition = resp.headers.get("Content-Disposition", "") if resp is not None else ""
        step.file_name = disposition.split("filename=", 1)[1].strip('"; ') if "filename=" in disposition else None
        step.body = None
        return step
