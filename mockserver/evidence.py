"""How an exchange with the SD3.5 API is read for the ledger's rows: the one definition shared by the shadow
proxy (``sd35-mock proxy``), the contract suite's recording and the reports ``python -m sd35_twin.contracts drift``
compares.

An exchange (a submit, a status read, a download) is read against a profile (the twin's assumed values,
``profiles/default.json`` merged with any override) into ``Reading``s: for one ledger row, what the API did,
whether the profile agrees (held) or not (drifted), and the profile override that would make the twin do the
same. Rows about a job's life are read across its exchanges: the ``Evidence`` keeps a bounded trace per job
(the submit's body, the states seen, polls and seconds to the end, the URLs and whether each served an image).

Evidence is counted, not kept whole: per row, counts, a few examples and what is needed to learn a value (the
codes seen per kind, the largest accepted number, a gcd). ``Evidence.learned()`` is the profile override the
drifted readings suggest; ``Evidence.contracts_report()`` is a report in the contract suite's format
(``sd35-contracts-report/1``), so ``drift`` and ``--profile-out`` work on it as on a contract run.

Also here, because the proxy's recording and the contracts' recording must redact alike: ``Redactor`` and
``summarise_body``. Standard library only, and nothing else of the mock (ARCHITECTURE.md: the contracts import it).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import unquote, urlsplit

__all__ = ["REDACTED", "SECRET_HEADERS", "Redactor", "summarise_body", "Exchange", "Reading", "Evidence",
           "ROWS", "KNOWN_FIELDS", "load_default_profile", "key_fingerprint", "classify_failure", "status_kind",
           "exchange_from_entry", "format_rows"]

REDACTED = "[REDACTED]"
SECRET_HEADERS = {"api-key", "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
MAX_TEXT = 20_000
SCHEMA = "sd35-contracts-report/1"   # the contract suite's report format (contracts/report.py)
SUBMIT_PATH = "/sd3_5/v1"
STATUS_PREFIX = "/sd3_5/v1/status/"

# The request fields the provider's page documents (ledger L04, L07, L10); any other is an unknown field (L20).
KNOWN_FIELDS = ("prompt", "negative_prompt", "num_inference_steps", "samples", "guidance_scale", "height", "width",
                "webhook", "direct_link", "batch_id", "file_prefix", "queued_image_urls")
NUMBERS = {"samples": "L05", "width": "L08", "height": "L08", "num_inference_steps": "L09", "guidance_scale": "L06"}
MULTIPLES = (8, 16, 32, 64, 128, 256)
BODY_LIMIT = 1_048_576    # ledger L26: bodies over 1 MiB are refused
IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp", "image/gif": "gif"}

# The rows an exchange can say something about: (behaviour, profile key).
ROWS: dict[str, tuple[str, str | None]] = {
    "L05": ("samples bounds", "limits.samples"),
    "L06": ("guidance_scale bounds", "limits.guidance_scale"),
    "L07": ("width, height default", "limits.width.default"),
    "L08": ("width, height bounds", "limits.width"),
    "L09": ("lower bounds and steps", "limits.num_inference_steps"),
    "L11": ("POST outcome", "submit.finished"),
    "L12": ("PENDING body", None),
    "L13": ("SUCCESS body", None),
    "L14": ("FAILURE body", None),
    "L15": ("HTTP codes", "http_status"),
    "L16": ("queued_image_urls", "http_status.image_not_ready"),
    "L17": ("direct_link", "urls"),
    "L18": ("file_prefix, batch_id", "echo_batch_id"),
    "L20": ("unknown fields", "reject_unknown_fields"),
    "L22": ("download URL lifetime", "http_status.image_expired"),
    "L23": ("rejection detail", "rejection_text_key"),
    "L24": ("job FAILURE carries id", "job_failure_includes_id"),
    "L26": ("body size cap", "http_status.body_too_large"),
    "L27": ("images", None),
    "L28": ("terminal states", None),
    "L29": ("key without credits", "http_status.no_credits"),
    "L30": ("rate limits", "http_status.rate_limited"),
    "L32": ("request Content-Type", "require_json_content_type"),
}

# Which rows a status code of each kind speaks for (the profile's http_status keys).
KIND_ROWS = {"submit_pending": ("L15",), "poll_pending": ("L15",), "success": ("L15",), "job_failure": ("L15",),
             "invalid": ("L15", "L23"), "unauthorized": ("L15",), "not_found": ("L15",),
             "image_not_ready": ("L16",), "image_expired": ("L22",), "body_too_large": ("L26",),
             "no_credits": ("L29",), "rate_limited": ("L30",), "unsupported_media_type": ("L32",)}


def load_default_profile() -> dict:
    """The twin's default profile (``profiles/default.json`` beside this module), read as data."""
    return json.loads((Path(__file__).parent / "profiles" / "default.json").read_text("utf-8"))


def key_fingerprint(key: str | None) -> str:
    """Who sent a request, without the key: a short hash kept in memory only (to tell an owner's job reads)."""
    return hashlib.sha256((key or "").encode("utf-8", "replace")).hexdigest()[:16] if key else ""


# --- redaction and bodies (the proxy's and the contracts' recordings) ------------------------------------------

class Redactor:
    """Removes secrets: the values of secret headers, and any occurrence of a known key anywhere. Keys can be
    added while it is in use (the proxy learns them from requests); at most ``max_secrets`` are remembered."""

    def __init__(self, secrets: Iterable[str | None] = (), max_secrets: int = 1024):
        self._lock = threading.Lock()
        self._known: OrderedDict[str, None] = OrderedDict()
        self.max_secrets = max_secrets
        self.secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret:
            return
        with self._lock:
            if secret in self._known:
                self._known.move_to_end(secret)
                return
            self._known[secret] = None
            while len(self._known) > self.max_secrets:
                self._known.popitem(last=False)
            # longest first, so a key containing another is removed whole
            self.secrets = sorted(self._known, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def headers(self, headers: Any) -> dict[str, str]:
        out = {}
        for name, value in dict(headers or {}).items():
            value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            out[str(name)] = REDACTED if str(name).lower() in SECRET_HEADERS else self.text(value)
        return out

    def value(self, value: Any) -> Any:
        """A JSON value with every string redacted (keys too)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        return value


def summarise_body(raw: bytes | str | None, content_type: str, redactor: Redactor) -> Any:
    """A body as a recording keeps it: JSON when it parses, else text (clipped); images and other binary bodies
    summarised (type, size, sha256), never stored."""
    if raw is None or raw == b"" or raw == "":
        return None
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype.startswith("image/") or (b"\x00" in raw[:512] and not ctype.endswith("json")):
        return {"_binary": ctype or "application/octet-stream", "bytes": len(raw),
                "sha256": hashlib.sha256(raw).hexdigest()}
    text = raw.decode("utf-8", "replace")
    if len(text) > MAX_TEXT:  # e.g. an oversized body
        return {"_text": redactor.text(text[:MAX_TEXT]), "truncated_from": len(text)}
    try:
        return redactor.value(json.loads(text))
    except (ValueError, RecursionError):
        return redactor.text(text)


# --- one exchange --------------------------------------------------------------------------------------------

@dataclass
class Exchange:
    """What the API answered to one request, as the readers need it (no key, no image bytes)."""

    kind: str                          # "submit" | "status" | "download"
    status: int                        # the HTTP status the API answered
    request: Any = None                # a submit's parsed JSON body
    request_bytes: int = 0
    body: Any = None                   # the answer's parsed JSON (None if it was not JSON)
    headers: Mapping[str, str] = field(default_factory=dict)   # the answer's headers, names in lower case
    job_id: str | None = None          # a status read's id; a download's job
    url: str | None = None             # a download's original URL
    who: str = ""                      # key_fingerprint() of the request's key
    image: dict | None = None          # a download: {"type", "width", "height", "decodable"}
    at: float = field(default_factory=time.time)     # when it was sent (wall time, as recordings say)
    request_type: str | None = None    # a submit's Content-Type as sent ("" for none); None when not recorded


def is_json_type(mimetype: str) -> bool:
    return mimetype == "application/json" or mimetype.endswith("+json")


@dataclass
class Reading:
    """What one exchange says about one row."""

    row: str
    held: bool
    text: str                          # one sentence: what was seen, and the profile's value when it differs
    hint: dict | None = None           # the profile override that makes the twin do what was seen
    value: Any = None                  # what was seen, as JSON


def _is_summary(value: Any) -> bool:
    return isinstance(value, Mapping) and ("_binary" in value or "_text" in value)


def exchange_from_entry(entry: Mapping, evidence: "Evidence", who: str = "") -> Exchange | None:
    """A recorded exchange (a line of the proxy's ``--record`` or of the contracts' ``--record``) as the readers
    take it; None when it is no answer of the API (an upstream failure, a control-plane call). The proxy and the
    contracts' recorder read each exchange through this, and ``drift`` reads a recording file through it too."""
    req, resp = entry.get("request"), entry.get("response")
    if not isinstance(req, Mapping) or not isinstance(resp, Mapping) or entry.get("error") \
            or not isinstance(resp.get("status"), int):
        return None
    status, method = resp["status"], str(req.get("method", ""))
    url = str(req.get("url") or req.get("path") or "")
    path = urlsplit(url).path
    headers = {str(k).lower(): str(v) for k, v in (resp.get("headers") or {}).items()}
    body = resp.get("body")
    answer = body if isinstance(body, (dict, list)) and not _is_summary(body) else None
    sent = req.get("body")
    request_json = sent if isinstance(sent, Mapping) and not _is_summary(sent) else None
    size = req.get("bytes")
    if not isinstance(size, int):
        size = sent.get("truncated_from", 0) if _is_summary(sent) else len(json.dumps(sent)) if sent is not None else 0
    at = entry["at"] if isinstance(entry.get("at"), (int, float)) else time.time()
    job = evidence.job_of_url(url) if method == "GET" else None
    if entry.get("kind") == "download" or job is not None:
        return Exchange("download", status, headers=headers, job_id=job, url=url, image=resp.get("image"),
                        body=answer if not 200 <= status < 300 else None, who=who, at=at)
    if method == "POST" and path.endswith(SUBMIT_PATH):
        sent_headers = req.get("headers")
        request_type = None
        if isinstance(sent_headers, Mapping):
            request_type = next((str(v) for k, v in sent_headers.items() if str(k).lower() == "content-type"), "")
            request_type = request_type.split(";")[0].strip().lower()
        return Exchange("submit", status, request=request_json, request_bytes=size, body=answer, headers=headers,
                        who=who, at=at, request_type=request_type)
    if method == "GET" and STATUS_PREFIX in path:
        return Exchange("status", status, body=answer, headers=headers, who=who, at=at,
                        job_id=unquote(path.rsplit("/", 1)[-1]))
    return None


def _failure_text(body: Any) -> str:
    if not isinstance(body, Mapping):
        return ""
    parts = [str(body.get(k)) for k in ("error", "message", "detail") if isinstance(body.get(k), (str, list))]
    return " ".join(parts)


def _error_rules(body: Any) -> list[tuple[str, str]]:
    """(field, rule) pairs of a FAILURE body's ``errors`` array (the twin's; the live API may have none)."""
    errors = body.get("errors") if isinstance(body, Mapping) else None
    out = []
    for e in errors if isinstance(errors, list) else []:
        if isinstance(e, Mapping):
            out.append((str(e.get("field", "")), str(e.get("rule", ""))))
    return out


def classify_failure(ex: Exchange) -> str | None:
    """Which kind of refusal a non-2xx answer to a submit or a status read is (the profile's ``http_status``
    key), from its rules when it names them, else from its words and headers; None if it cannot tell."""
    rules = _error_rules(ex.body)
    text = _failure_text(ex.body).lower()
    if any(r in ("rate_limit", "max_pending") for _, r in rules) or "retry-after" in ex.headers \
            or "rate limit" in text or "too many requests" in text:
        return "rate_limited"
    if ex.status >= 500:     # a server's own trouble (or a gateway's) says nothing of the request's rows
        return None
    if ex.kind == "submit" and ex.request_type is not None and not is_json_type(ex.request_type) and (
            ex.status == 415 or any(f.lower() == "content-type" for f, _ in rules) or "content-type" in text):
        return "unsupported_media_type"
    if any(r == "credits" for _, r in rules) or "credit" in text:
        return "no_credits"
    if any(f == "API-Key" for f, _ in rules) or any(w in text for w in ("api-key", "api key", "apikey",
                                                                          "unauthori", "authenticat")):
        return "unauthorized"
    if ex.kind == "submit" and (ex.request_bytes > BODY_LIMIT or ("body", "maxLength") in rules):
        return "body_too_large"
    if ex.kind == "status" and (any(f == "id" for f, _ in rules) or "not found" in text or "no job" in text):
        return "not_found"
    if ex.kind == "submit" and isinstance(ex.request, Mapping):
        named = {f.split(".")[0].split("[")[0] for f, _ in rules}
        if named & set(ex.request) or any(name in text for name in ex.request):
            return "invalid"
    if ex.kind == "submit" and ex.status in (400, 422):
        return "invalid"
    return None


def status_kind(ex: Exchange, known_job: bool) -> str | None:
    """The profile's ``http_status`` key a job answer stands for (submit_pending, poll_pending, success,
    job_failure), or a refusal's kind (``classify_failure``)."""
    state = ex.body.get("status") if isinstance(ex.body, Mapping) else None
    if 200 <= ex.status < 300 or (state in ("PENDING", "SUCCESS") and ex.status < 400):
        if state == "PENDING":
            return "submit_pending" if ex.kind == "submit" else "poll_pending"
        if state == "SUCCESS":
            return "success"
        if state == "FAILURE" and (known_job or "id" in ex.body):
            return "job_failure"
        if state == "FAILURE" and ex.kind == "submit":   # a refusal answered with a 2xx: its kind, at that code
            return classify_failure(ex)
    if ex.kind == "status" and known_job and state == "FAILURE" and ex.status not in (401, 403, 429) \
            and ex.status < 500 and not _error_rules(ex.body):
        return "job_failure"
    if ex.status >= 400:
        return classify_failure(ex)
    return None


def _get(profile: Mapping, path: str, default: Any = None) -> Any:
    node: Any = profile
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _hint(path: str, value: Any) -> dict:
    out: dict = {}
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _leaves(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(_leaves(value, path))
        else:
            out[path] = value
    return out


def _merge(base: dict, override: Mapping) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else value
    return out


def _compare(row: str, path: str, seen: Any, profile: Mapping, what: str) -> Reading:
    expected = _get(profile, path)
    held = expected == seen
    text = f"{row}: {what} {json.dumps(seen)}" + ("" if held else f", the profile assumes {json.dumps(expected)}")
    return Reading(row, held, text, _hint(path, seen), seen)


# --- a job's life, across its exchanges ----------------------------------------------------------------------

@dataclass
class JobTrace:
    """What the evidence keeps of one job: its submit and what its answers said (bounded: no bodies)."""

    id: str
    who: str
    request: dict
    submitted_at: float
    last_state: str = "PENDING"
    polls: int = 0
    ended_at: float | None = None
    end_state: str | None = None
    served: dict = field(default_factory=dict)         # URL -> when it last served an image


# --- the tallies (counted, not kept whole) -------------------------------------------------------------------

MAX_EXAMPLES = 3
MAX_DISTINCT = 16


@dataclass
class _RowTally:
    held: int = 0
    drifted: int = 0
    examples: list = field(default_factory=list)       # the last few drifted readings' texts
    seen: list = field(default_factory=list)           # the last few readings' values
    codes: dict = field(default_factory=dict)          # hint path -> Counter of drifted values

    def add(self, reading: Reading) -> None:
        if reading.held:
            self.held += 1
        else:
            self.drifted += 1
            self.examples = (self.examples + [reading.text])[-MAX_EXAMPLES:]
            for path, value in _leaves(reading.hint or {}).items():
                counter, key = self.codes.setdefault(path, Counter()), json.dumps(value)
                if key in counter or len(counter) < MAX_DISTINCT:   # a value counted already is always counted again
                    counter[key] += 1
        self.seen = (self.seen + [reading.value])[-MAX_EXAMPLES:]


@dataclass
class _NumberTally:
    """One numeric field's accepted and refused values, as much as learning its bounds needs."""

    max_accepted: float | None = None
    min_accepted: float | None = None
    gcd_accepted: int = 0
    refused: dict = field(default_factory=dict)        # cause -> sorted list of up to MAX_DISTINCT values

    def accept(self, value: float) -> None:
        self.max_accepted = value if self.max_accepted is None else max(self.max_accepted, value)
        self.min_accepted = value if self.min_accepted is None else min(self.min_accepted, value)
        if isinstance(value, int):
            self.gcd_accepted = math.gcd(self.gcd_accepted, value)

    def refuse(self, value: float, cause: str) -> None:
        values = self.refused.setdefault(cause, [])
        if value not in values:
            values.append(value)
            values.sort()
            if len(values) > MAX_DISTINCT:   # keep the ends that bound a limit: the smallest too big, the largest too small
                values[:] = values[-MAX_DISTINCT:] if cause == "minimum" else values[:MAX_DISTINCT]


class Evidence:
    """Reads exchanges against a profile and keeps the counts: thread-safe, bounded by ``max_jobs``."""

    def __init__(self, profile: Mapping | None = None, *, max_jobs: int = 10_000):
        self.profile = dict(profile) if profile is not None else load_default_profile()
        self.max_jobs = max_jobs
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, JobTrace] = OrderedDict()
        self._url_jobs: OrderedDict[str, str] = OrderedDict()
        self._rows: dict[str, _RowTally] = {}
        self._numbers: dict[str, _NumberTally] = {}
        self.exchanges = 0
        self.ended = {"count": 0, "seconds": [], "polls": []}      # bounded samples of jobs' lives
        self.submit_states: set[str] = set()   # what accepted submits answered: both PENDING and SUCCESS is a lifecycle

    # -- reading ---------------------------------------------------------------------------------

    def read(self, ex: Exchange) -> list[Reading]:
        """The readings of one exchange (and the tallies and job traces updated with them)."""
        with self._lock:
            self.exchanges += 1
            if ex.kind == "submit":
                readings = self._submit(ex)
            elif ex.kind == "status":
                readings = self._status(ex)
            elif ex.kind == "download":
                readings = self._download(ex)
            else:
                readings = []
            for reading in readings:
                self._rows.setdefault(reading.row, _RowTally()).add(reading)
            return readings

    def job_of_url(self, url: str) -> str | None:
        with self._lock:
            return self._url_jobs.get(url)

    def _track(self, job: JobTrace) -> None:
        self._jobs[job.id] = job
        self._jobs.move_to_end(job.id)
        while len(self._jobs) > self.max_jobs:
            self._jobs.popitem(last=False)

    def _codes(self, ex: Exchange, kind: str | None) -> list[Reading]:
        if kind is None:
            return []
        return [_compare(row, f"http_status.{kind}", ex.status, self.profile, f"{kind} answered HTTP")
                for row in KIND_ROWS.get(kind, ())]

    def _submit(self, ex: Exchange) -> list[Reading]:
        p = self.profile
        body = ex.body if isinstance(ex.body, Mapping) else {}
        request = ex.request if isinstance(ex.request, Mapping) else None
        state = body.get("status")
        accepted = 200 <= ex.status < 300 and state in ("PENDING", "SUCCESS") and body.get("id") is not None
        kind = status_kind(ex, known_job=False)
        out = self._codes(ex, kind)
        if request is not None:
            out += self._numbers_read(request, accepted, body)
            unknown = [k for k in request if k not in KNOWN_FIELDS]
            if unknown and (accepted or kind == "invalid"):
                named = accepted is False and any(u in _failure_text(body) or u in {f for f, _ in _error_rules(body)}
                                                  for u in unknown)
                if accepted or named:
                    out.append(_compare("L20", "reject_unknown_fields", not accepted, p,
                                        f"a submit with unknown field(s) {unknown[:3]}: refused ="))
        if ex.request_type is not None and not is_json_type(ex.request_type) and (
                accepted or kind == "unsupported_media_type"):
            sent = repr(ex.request_type) if ex.request_type else "no Content-Type"
            out.append(_compare("L32", "require_json_content_type", not accepted, p,
                                f"a submit with {sent[:60]}: refused ="))
        if kind == "invalid":
            key = next((k for k in ("error", "message", "detail") if isinstance(body.get(k), (str, list))
                        and body.get(k)), None)
            if key is not None:
                out.append(_compare("L23", "rejection_text_key", key, p, "a rejection's text is under"))
            out.append(Reading("L14", state == "FAILURE" and key is not None,
                               f"L14: a rejection's body has {sorted(body)[:6]}", None,
                               {"status": state, "text_key": key}))
        if accepted:
            out.append(self._outcome(state, p))
            job = JobTrace(str(body["id"]), ex.who, dict(request or {}), ex.at)
            self._track(job)
            out += self._job_answer(job, ex, body)
        return out

    def _outcome(self, state: str, p: Mapping) -> Reading:
        self.submit_states.add(state)
        finished = _get(p, "submit.finished", "lifecycle")
        held = finished == "lifecycle" or (finished == "always") == (state == "SUCCESS")
        learned = "always" if state == "SUCCESS" else "never"
        text = f"L11: a submit answered {state}" + ("" if held else f", the profile assumes submit.finished={finished}")
        return Reading("L11", held, text, None if held else _hint("submit.finished", learned), state)

    def _status(self, ex: Exchange) -> list[Reading]:
        body = ex.body if isinstance(ex.body, Mapping) else {}
        job = self._jobs.get(ex.job_id)
        known = job is not None and job.who == ex.who
        kind = status_kind(ex, known_job=known)
        if not known and kind in ("poll_pending", "success", "job_failure") and ex.job_id:
            # a job submitted before the proxy started (or by another path): read it, with no submit to compare
            job = JobTrace(ex.job_id, ex.who, {}, ex.at)
            self._track(job)
            known = True
        out = self._codes(ex, kind)
        if known and kind in ("poll_pending", "success", "job_failure"):
            job.polls += 1
            out += self._job_answer(job, ex, body)
        return out

    def _job_answer(self, job: JobTrace, ex: Exchange, body: Mapping) -> list[Reading]:
        """What a job's answer (the submit's or a status read's) says about its body and life."""
        p = self.profile
        out: list[Reading] = []
        state = body.get("status")
        if job.end_state is not None and state != job.end_state:
            out.append(Reading("L28", False, f"L28: job answered {state} after {job.end_state}", None,
                               {"after": job.end_state, "then": state}))
        elif job.end_state is not None:
            out.append(Reading("L28", True, f"L28: a {state} job stays {state}", None, {"state": state}))
        if state == "PENDING":
            out.append(Reading("L12", body.get("id") is not None, "L12: a PENDING body carries its id", None,
                               sorted(body)))
        elif state == "SUCCESS":
            urls = body.get("download_urls")
            samples = job.request.get("samples")
            ok = isinstance(urls, list) and (samples is None or len(urls) == samples)
            out.append(Reading("L13", ok, f"L13: SUCCESS carries {len(urls) if isinstance(urls, list) else 'no'} "
                                          f"download_urls for samples={samples}", None,
                               {"download_urls": len(urls) if isinstance(urls, list) else None, "samples": samples}))
        elif state == "FAILURE":
            out.append(_compare("L24", "job_failure_includes_id", "id" in body, p, "a failed job's body carries its id:"))
            out.append(Reading("L14", bool(_failure_text(body)), "L14: a failed job's body carries a message", None,
                               sorted(body)))
        if isinstance(body.get("download_urls"), list):
            for url in body["download_urls"]:
                if isinstance(url, str):
                    self._url_jobs[url] = job.id
                    self._url_jobs.move_to_end(url)
            while len(self._url_jobs) > 4 * self.max_jobs:
                self._url_jobs.popitem(last=False)
        if "batch_id" in job.request and isinstance(job.request.get("batch_id"), str):
            echoed = body.get("batch_id") == job.request["batch_id"]
            out.append(_compare("L18", "echo_batch_id", echoed, p, "batch_id echoed:"))
        if state in ("SUCCESS", "FAILURE") and job.end_state is None:
            job.end_state, job.ended_at = state, ex.at
            self.ended["count"] += 1
            for name, value in (("seconds", round(ex.at - job.submitted_at, 3)), ("polls", job.polls)):
                self.ended[name] = (self.ended[name] + [value])[-1000:]
        if state in ("PENDING", "SUCCESS", "FAILURE"):
            job.last_state = state
        return out

    def _numbers_read(self, request: Mapping, accepted: bool, body: Mapping) -> list[Reading]:
        """Rows L05, L06, L08, L09: each number the submit sent, accepted or refused, against the profile's limits."""
        out: list[Reading] = []
        rules = _error_rules(body)
        named = {f for f, _ in rules}
        text = _failure_text(body)
        for name, row in NUMBERS.items():
            value = request.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            limits = _get(self.profile, f"limits.{name}", {}) or {}
            lo, hi, step = limits.get("min"), limits.get("max"), limits.get("multiple_of")
            profile_cause = ("minimum" if lo is not None and value < lo else
                             "maximum" if hi is not None and value > hi else
                             "multipleOf" if step and isinstance(value, int) and value % step else None)
            tally = self._numbers.setdefault(name, _NumberTally())
            if accepted:
                tally.accept(value)
                held = profile_cause is None
                what = f"{name}={value} accepted"
            else:
                if named and name not in named and name not in text:
                    continue                     # refused for another field: says nothing of this one
                if not named and name not in text:
                    continue
                cause = next((r for f, r in rules if f == name), None) or profile_cause or \
                    ("maximum" if tally.max_accepted is not None and value > tally.max_accepted else "multipleOf")
                tally.refuse(value, cause)
                held = profile_cause is not None
                what = f"{name}={value} refused ({cause})"
            text_ = f"{row}: {what}" + ("" if held else f", the profile has {json.dumps(limits)}")
            out.append(Reading(row, held, text_, None, {name: value, "accepted": accepted}))
        return out

    def _download(self, ex: Exchange) -> list[Reading]:
        p = self.profile
        job = self._jobs.get(ex.job_id)
        if job is None:
            return []
        out: list[Reading] = []
        ok = 200 <= ex.status < 300
        if not ok:
            if ex.url in job.served:
                out += self._codes(ex, "image_expired")
                if job.ended_at is not None:   # the URL's life, as far as it was seen: between these two ages
                    for reading in out:
                        reading.value = {"http_status": ex.status, "lifetime_s_between": [
                            round(job.served[ex.url] - job.ended_at, 3), round(ex.at - job.ended_at, 3)]}
            elif job.last_state == "PENDING":
                out += self._codes(ex, "image_not_ready")
            return out
        if ex.url:
            job.served[ex.url] = ex.at
        ctype = str(ex.headers.get("content-type", "")).split(";")[0].strip().lower()
        fmt = IMAGE_TYPES.get(ctype, ctype or "none")
        which = "direct_link_format" if job.request.get("direct_link") is True else "opaque_format"
        out.append(_compare("L17", f"urls.{which}", fmt, p, f"a download ({which.split('_')[0]}) served"))
        if ex.image is None:      # no image summary (the contracts' recording): nothing to say of L07, L27
            return out
        image = ex.image
        width = job.request.get("width", _get(p, "limits.width.default", 1024))
        height = job.request.get("height", _get(p, "limits.height.default", 1024))
        size = (image.get("width"), image.get("height"))
        good = bool(image.get("decodable")) and size == (width, height)
        out.append(Reading("L27", good, f"L27: a download is {image.get('type')} {size[0]}x{size[1]}"
                                        f"{'' if image.get('decodable') else ' (not decodable)'}, asked {width}x{height}",
                           None, {"size": list(size), "asked": [width, height], "decodable": image.get("decodable")}))
        if image.get("decodable") and "width" not in job.request and "height" not in job.request and not good:
            out.append(Reading("L07", False, f"L07: an image without width/height is {size[0]}x{size[1]}",
                               {"limits": {"width": {"default": size[0]}, "height": {"default": size[1]}}},
                               list(size)))
        elif image.get("decodable") and "width" not in job.request and "height" not in job.request:
            out.append(Reading("L07", True, f"L07: the default size {size[0]}x{size[1]}", None, list(size)))
        return out

    def read_recording(self, lines: Iterable[str]) -> int:
        """Read a recording (JSON lines, as the proxy and the contracts write them); the exchanges read."""
        count = 0
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            exchange = exchange_from_entry(entry, self) if isinstance(entry, Mapping) else None
            if exchange is not None:
                self.read(exchange)
                count += 1
        return count

    # -- what it learned -------------------------------------------------------------------------

    def _number_hint(self, name: str) -> dict:
        tally = self._numbers.get(name)
        if tally is None:
            return {}
        limits = _get(self.profile, f"limits.{name}", {}) or {}
        hint: dict = {}
        hi, lo, step = limits.get("max"), limits.get("min"), limits.get("multiple_of")
        too_big = tally.refused.get("maximum", [])
        if tally.max_accepted is not None and hi is not None and tally.max_accepted > hi:
            hint["max"] = tally.max_accepted
        elif too_big and hi is not None and min(too_big) <= hi:
            below = tally.max_accepted if tally.max_accepted is not None and tally.max_accepted < min(too_big) else None
            hint["max"] = below if below is not None else (min(too_big) - (step or 1))
        too_small = tally.refused.get("minimum", [])
        if tally.min_accepted is not None and lo is not None and tally.min_accepted < lo:
            hint["min"] = tally.min_accepted
        elif too_small and lo is not None and max(too_small) >= lo:
            hint["min"] = max(too_small) + (step or 1)
        off = tally.refused.get("multipleOf", [])
        if step and (off or (tally.gcd_accepted and tally.gcd_accepted % step)):
            for candidate in sorted(set(MULTIPLES) | {1, 2, 4}):
                if tally.gcd_accepted and tally.gcd_accepted % candidate:
                    continue
                if all(isinstance(v, int) and v % candidate for v in off):
                    if candidate != step:
                        hint["multiple_of"] = candidate
                    break
        return hint

    def learned(self, rows: Iterable[str] | None = None) -> dict:
        """The profile override the drifted readings suggest: per value, the one seen most often; numbers'
        bounds from the accepted and refused values."""
        with self._lock:
            wanted = set(rows) if rows is not None else None
            out: dict = {}
            for row, tally in self._rows.items():
                if wanted is not None and row not in wanted:
                    continue
                out = _merge(out, self._row_hint(row, tally))
            return out

    def _row_hint(self, row: str, tally: _RowTally) -> dict:
        hint: dict = {}
        if not tally.drifted:
            return hint
        for path, counter in tally.codes.items():
            values = counter.most_common()
            # only one answer drifts from "always" or "never": the states seen tell a lifecycle
            if path == "submit.finished" and len(self.submit_states) > 1:
                hint = _merge(hint, _hint(path, "lifecycle"))
            else:
                hint = _merge(hint, _hint(path, json.loads(values[0][0])))
        for name, number_row in NUMBERS.items():
            if number_row == row:
                learned = self._number_hint(name)
                if learned:
                    hint = _merge(hint, {"limits": {name: learned}})
        return hint

    # -- the report ------------------------------------------------------------------------------

    def rows(self) -> list[dict]:
        """Every row an exchange can speak for: held, drifted or not seen, with counts, examples and hint."""
        with self._lock:
            out = []
            for row, (behaviour, key) in ROWS.items():
                tally = self._rows.get(row)
                entry: dict[str, Any] = {"id": row, "behaviour": behaviour}
                if key:
                    entry["profile_key"] = key
                if tally is None:
                    entry.update(result="not_seen", held=0, drifted=0)
                else:
                    entry.update(result="drifted" if tally.drifted else "held", held=tally.held,
                                 drifted=tally.drifted, seen=tally.seen)
                    if tally.drifted:
                        entry["examples"] = tally.examples
                        hint = self._row_hint(row, tally)
                        if hint:
                            entry["profile_hint"] = hint
                out.append(entry)
            return out

    def summary(self) -> dict:
        rows = self.rows()
        with self._lock:
            seconds, polls = sorted(self.ended["seconds"]), sorted(self.ended["polls"])
            jobs = {"tracked": len(self._jobs), "ended": self.ended["count"]}
            if seconds:
                jobs["median_seconds_to_end"] = seconds[len(seconds) // 2]
                jobs["median_polls_to_end"] = polls[len(polls) // 2]
            exchanges = self.exchanges
        counts = Counter(r["result"] for r in rows)
        return {"exchanges": exchanges, "held": counts["held"], "drifted": counts["drifted"],
                "not_seen": counts["not_seen"], "jobs": jobs, "rows": rows}

    def contracts_report(self, target: Mapping, *, started_at: float | None = None) -> dict:
        """The evidence as a contract run's report (``sd35-contracts-report/1``): a row held if every reading
        agreed, failed if one drifted (its observation carries the learned override, which ``drift`` turns
        into ``--profile-out``), not checked if never seen."""
        rows = []
        summary = {"held": 0, "failed": 0, "not_checked": 0}
        for entry in self.rows():
            nodeid = f"proxy::{entry['id']}"
            row = {"id": entry["id"], "behaviour": entry["behaviour"]}
            if "profile_key" in entry:
                row["profile_key"] = entry["profile_key"]
            if entry["result"] == "not_seen":
                row.update(result="not_checked", tests=[{"nodeid": nodeid, "outcome": "skipped",
                                                          "reason": "not seen by the proxy"}],
                           note="not seen by the proxy")
                summary["not_checked"] += 1
            else:
                failed = entry["result"] == "drifted"
                test = {"nodeid": nodeid, "outcome": "failed" if failed else "passed"}
                observed: dict[str, Any] = {"test": nodeid, "value": {"held": entry["held"], "drifted": entry["drifted"],
                                                                       "seen": entry.get("seen", [])}}
                if failed:
                    test["message"] = "; ".join(entry.get("examples", []))[:500]
                    if entry.get("profile_hint"):
                        observed["profile"] = entry["profile_hint"]
                row.update(result="failed" if failed else "held", tests=[test], observed=[observed],
                           note=test.get("message", f"{entry['held']} readings held"))
                summary["failed" if failed else "held"] += 1
            rows.append(row)
        data = {"schema": SCHEMA, "target": dict(target), "summary": summary, "rows": rows}
        if started_at is not None:
            data["started_at"] = round(started_at, 3)
            data["duration_s"] = round(time.time() - started_at, 3)
        return data


def format_rows(summary: Mapping, width: int = 120) -> str:
    """The evidence as a table (the proxy prints it on exit)."""
    lines = [f"{'row':<4} {'result':<9} {'held':>5} {'drift':>5}  {'behaviour':<24} example / learned"]
    for row in summary.get("rows", []):
        note = ""
        if row.get("examples"):
            note = row["examples"][-1]
        if row.get("profile_hint"):
            note += "  learned " + json.dumps(row["profile_hint"], sort_keys=True)
        line = (f"{row['id']:<4} {row['result']:<9} {row.get('held', 0):>5} {row.get('drifted', 0):>5}  "
                f"{row['behaviour'][:24]:<24} {note}")
        lines.append(line if len(line) <= width else line[: width - 3] + "...")
    lines.append(f"{summary.get('exchanges', 0)} exchanges: {summary.get('held', 0)} rows held, "
                 f"{summary.get('drifted', 0)} drifted, {summary.get('not_seen', 0)} not seen")
    return "\n".join(lines)
