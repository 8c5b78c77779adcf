"""The dashboard at ``/__mock__/ui``: the control plane for people (docs/dashboard.md).

Server-rendered pages (Jinja, autoescape on: prompts, batch ids, errors, webhook URLs and journal bodies are
whatever a client sent) over the same ``MockBackend`` the JSON control plane uses. Every change a page offers
goes through the JSON control endpoints, by ``fetch()`` from ``static/dashboard.js``, so the dashboard can do
nothing the control plane cannot, and is refused what the control plane refuses.

Protection is the control plane's own guard (``guard.guard_control_plane``: Origin, Host, token, JSON for
changes). A browser cannot send ``X-Mock-Token`` on a navigation, so with a control token a page without it
answers 401 with a small token form; its script trades the token (``POST /__mock__/ui/session``, JSON) for an
``HttpOnly; SameSite=Strict; Path=/__mock__`` cookie that the guard accepts in place of the header. Static
files (no data in them) and that exchange are the only things served without the token. Pages send a
Content-Security-Policy without 'unsafe-inline': every script and style is a file under ``static/``.

Nothing under ``/__mock__`` is journaled or faulted, so the dashboard, its thumbnails included, is never API
traffic.
"""

from __future__ import annotations

import hmac
import io
import json
import threading
import time
from collections import OrderedDict
from datetime import datetime
from urllib.parse import quote, unquote, urlencode

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from PIL import Image

from ..config import redacted_map
from ..errors import FieldError, InvalidRequest, MockError, NotFound
from ..jobs import FAILURE, PENDING, SUCCESS, JobView
from ..journal import FILTERS as JOURNAL_FILTERS, KINDS as JOURNAL_KINDS
from ..validation import check_url_text, parse_json_body
from .answers import DEFAULT_STATUS, failure_response
from .control import config_body, journal_filters
from .guard import SAFE_METHODS, TOKEN_COOKIE, guard_control_plane

ui = Blueprint("ui", __name__, url_prefix="/__mock__/ui", template_folder="templates", static_folder="static",
               static_url_path="/static")

PAGE_SIZE = 60            # jobs in the gallery at first; "more" adds as many again
MAX_PAGE = 2_000          # the most a page ever lists (jobs, journal entries, webhook attempts)
THUMB_PX = 256            # a thumbnail's longer side
THUMB_CACHE_BYTES = 8 << 20
STATUSES = (PENDING, SUCCESS, FAILURE)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# Served without the token (with Origin and Host still checked): files with no data, and the token exchange.
OPEN_ENDPOINTS = frozenset({"ui.static", "ui.sign_in"})


def _backend():
    return current_app.extensions["sd35_backend"]


# -- protection -------------------------------------------------------------------------------------------

@ui.before_request
def guard():
    """The control plane's guard; a page refused only for want of the token is the token form instead."""
    refusal = guard_control_plane()
    if refusal is not None and refusal.status_code == 401:
        if request.endpoint in OPEN_ENDPOINTS:
            refusal = None
        elif request.method in SAFE_METHODS:
            response = Response(render_template("ui/sign_in.html", stale=TOKEN_COOKIE in request.cookies), 401)
            if TOKEN_COOKIE in request.cookies:
                response.delete_cookie(TOKEN_COOKIE, path="/__mock__")
            return response
    if refusal is not None and request.method in SAFE_METHODS and request.endpoint not in OPEN_ENDPOINTS \
            and request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        # A page opened in a browser that the guard refuses (say at http://0.0.0.0:PORT/): the same explanation
        # as a page, without the header's facts (whoever is refused sees nothing of the mock's state).
        errors = (refusal.get_json(silent=True) or {}).get("errors", [])
        return Response(render_template("ui/refused.html", errors=errors, status=refusal.status_code),
                        refusal.status_code)
    if refusal is not None:
        return refusal
    check_url_text("id", request.environ["PATH_INFO"].encode("latin-1"), request.query_string)
    return None


@ui.after_request
def headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


@ui.post("/session")
def sign_in():
    """Trade the control token (JSON ``{"token": "..."}``) for the cookie the guard accepts; 204."""
    if request.mimetype != "application/json":
        return failure_response([FieldError("Content-Type", "json", "must be application/json")], 415)
    body = parse_json_body(request.get_data(cache=True))
    token = _backend().config.control_token
    given = body.get("token") if isinstance(body, dict) else None
    if token is None:
        return failure_response([FieldError("token", "unused", "this mock has no control token")], 400)
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
        return failure_response([FieldError("token", "valid", "is not this mock's control token")], 401)
    response = Response(status=204)
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/__mock__",
                        secure=request.is_secure)
    return response


@ui.delete("/session")
def sign_out():
    response = Response(status=204)
    response.delete_cookie(TOKEN_COOKIE, path="/__mock__")
    return response


@ui.errorhandler(MockError)
def mock_error(error: MockError):
    """A page that cannot be shown (an unknown job): the error as a page; anything else stays JSON."""
    status = DEFAULT_STATUS.get(error.kind, 400)  # the control plane's fixed codes, as the app's handler
    if request.endpoint == "ui.job_page":
        return render_template("ui/error.html", errors=error.errors, status=status, **_chrome()), status
    return failure_response(error.errors, status)


# -- helpers for the templates ------------------------------------------------------------------------

def _chrome() -> dict:
    """What every page's header shows: the mock's lifecycle, clock offset and job count (and, for the gallery,
    the jobs by status: one walk of the store serves both)."""
    backend = _backend()
    stats = backend.stats()
    offset = backend.clock.now() - time.time()
    return {"facts": {"lifecycle": lifecycle_text(backend.config), "offset": _duration(offset, signed=True),
                      "jobs": stats["jobs"], "by_status": stats["by_status"]},
            "signed_in": TOKEN_COOKIE in request.cookies and backend.config.control_token is not None,
            "now": backend.clock.now()}


def lifecycle_text(config) -> str:
    """The lifecycle with its timing, as the header shows it: "seconds (2 s)", "polls (done on poll 2)"."""
    if config.lifecycle == "seconds":
        return f"seconds ({config.pending_seconds:g} s PENDING)"
    if config.lifecycle == "polls":
        return f"polls (done on poll {config.pending_polls})"
    return {"immediate": "immediate (done at once)", "manual": "manual (you finish each job)"}.get(
        config.lifecycle, config.lifecycle)


def rule_text(rule: dict) -> str:
    """A rule in words, for a job's page: what it matches, what it does, how often."""
    match = rule.get("match") or {}
    words = {"api_key": "API key {!s}", "batch_id": "batch_id {!r}", "prompt_contains": "a prompt containing {!r}",
             "prompt_pattern": "a prompt matching {!r}"}
    conditions = [words[k].format(v) for k, v in match.items() if k in words]
    conditions += [f"header {name} = {value!r}" for name, value in (match.get("headers") or {}).items()]
    effects = []
    if rule.get("outcome"):
        effects.append(f"ends the job in {rule['outcome']}" + (f" with error {rule['error']!r}" if rule.get("error") else ""))
    if rule.get("lifecycle"):
        timing = {"seconds": f" ({rule.get('pending_seconds'):g} s)" if rule.get("pending_seconds") is not None else "",
                  "polls": f" (done on poll {rule.get('pending_polls')})" if rule.get("pending_polls") else ""}
        effects.append(f"times it {rule['lifecycle']}{timing.get(rule['lifecycle'], '')}")
    if rule.get("fault"):
        fault = rule["fault"]
        details = ", ".join(f"{k} {v}" for k, v in fault.items() if k not in ("type", "endpoint", "phase"))
        effects.append(f"injects a {fault.get('type')} fault on {fault.get('endpoint', 'any')}" +
                       (f" ({details})" if details else ""))
    times = rule.get("times")
    uses = f"applied {rule.get('applied', 0)} time{'' if rule.get('applied') == 1 else 's'}" + \
        (f" of {times}" if times is not None else " (until deleted)")
    return (f"for {' and '.join(conditions) if conditions else 'every request'}, it "
            f"{'; '.join(effects) if effects else 'changes nothing'}; {uses}.")


def _duration(seconds: float, signed: bool = False) -> str:
    """``75`` → ``"1 min 15 s"``; ``signed``: with + or − (the clock's offset)."""
    sign = ("+" if seconds >= -0.5 else "−") if signed else ""
    s = round(abs(seconds))
    if s < 60:
        return f"{sign}{s} s"
    if s < 3600:
        return f"{sign}{s // 60} min" + (f" {s % 60} s" if s < 600 and s % 60 else "")
    if s < 86400:
        return f"{sign}{s // 3600} h" + (f" {s % 3600 // 60} min" if s % 3600 >= 60 else "")
    return f"{sign}{s / 86400:.1f} d"


def _clock(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at).strftime("%H:%M:%S")


def _stamp(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _short(text: str | None, limit: int = 90) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _pretty(value: object) -> str:
    """JSON for a <pre>: plain text, which autoescape escapes like any other."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _job_path(job_id: str) -> str:
    return "/__mock__/ui/job/" + quote(job_id, safe="")


def _thumb_path(view: JobView, index: int, full: bool = False) -> str:
    return f"/__mock__/ui/{'image' if full else 'thumb'}/{index}/{quote(view.id, safe='')}?v={view.created_at!r}"


@ui.context_processor
def helpers() -> dict:
    return {"clock": _clock, "stamp": _stamp, "short": _short, "pretty": _pretty, "job_path": _job_path,
            "duration": _duration, "quote": lambda value: quote(value, safe="")}


def _owners(views: list[JobView]) -> dict[str, str]:
    """Each job's owner key, redacted as the control plane redacts keys (``config.redacted_map``: keys that
    redact alike stay apart on one page)."""
    shown = {key: name for name, key in redacted_map({v.owner_key: v.owner_key for v in views}).items()}
    return {v.id: shown[v.owner_key] for v in views}


def _page_limit(default: int) -> int:
    raw = request.args.get("limit", "")
    return min(int(raw), MAX_PAGE) if raw.isascii() and raw.isdigit() and 0 < len(raw) <= 5 and int(raw) > 0 \
        else default


# -- pages --------------------------------------------------------------------------------------------

@ui.get("")
@ui.get("/")
def jobs_page():
    backend = _backend()
    status = request.args.get("status") or None
    batch_id = request.args.get("batch_id") or None
    problems = []
    if status not in (None, *STATUSES):
        problems.append(FieldError("status", "enum", "must be PENDING, SUCCESS or FAILURE"))
        status = None
    limit = _page_limit(PAGE_SIZE)
    views = backend.list_jobs(batch_id, status, limit + 1)  # newest first; one more tells if there are more
    more = len(views) > limit
    views = views[:limit]
    owners = _owners(views)
    now = backend.clock.now()
    jobs = [{"view": v, "key": owners.get(v.id, "…"), "age": _duration(now - v.created_at),
             "thumb": _thumb_path(v, 1) if v.status == SUCCESS else None, "url": _job_path(v.id)} for v in views]
    args = {k: v for k, v in (("status", status), ("batch_id", batch_id)) if v}
    return render_template("ui/jobs.html", page="jobs", jobs=jobs, status=status, batch_id=batch_id or "",
                           problems=problems, statuses=STATUSES,
                           more_url="?" + urlencode(dict(args, limit=min(limit + PAGE_SIZE, MAX_PAGE)))
                           if more and limit < MAX_PAGE else None, shown=len(jobs), **_chrome())


@ui.get("/job/<anything:job_id>")
def job_page(job_id: str):
    backend = _backend()
    view = backend.job(job_id)
    journal = backend.journal.entries(50, job_id=view.id)[::-1]
    rule = backend.job_rule(view.id) if view.rule_id else None
    attempts = backend.webhooks.records(view.id)[::-1]
    images = [{"thumb": _thumb_path(view, n), "full": _thumb_path(view, n, full=True), "n": n}
              for n in range(1, view.request.samples + 1)] if view.status == SUCCESS else []
    history = [{"status": s, "at": t, "after": _duration(t - view.created_at)} for s, t in view.history]
    return render_template("ui/job.html", page="jobs", view=view, key=_owners([view])[view.id],
                           request_fields=view.request.as_dict(), body=view.body(backend.profile), images=images,
                           history=history, journal=journal, attempts=attempts, age=_duration(backend.clock.now()
                                                                                            - view.created_at),
                           rule=rule, rule_text=rule_text(rule) if rule else "",
                           control_path="/__mock__/jobs/" + quote(view.id, safe=""), **_chrome())


@ui.get("/journal")
def journal_page():
    backend = _backend()
    if any(not v for v in request.args.values()):  # the filter form sends its empty fields: drop them
        return redirect("?" + urlencode({k: v for k, v in request.args.items() if v}) if any(request.args.values())
                        else url_for("ui.journal_page"))
    problems: list[FieldError] = []
    values = {name: request.args.get(name, "") for name in JOURNAL_FILTERS}
    try:
        filters = journal_filters()
    except InvalidRequest as error:
        problems, filters = error.errors, {}
    limit = _page_limit(100)
    entries = backend.journal.entries(limit, **filters)[::-1] if not problems else []
    more = len(entries) >= limit and limit < MAX_PAGE and len(backend.journal) > limit
    more_url = "?" + urlencode(dict({k: v for k, v in request.args.items() if k != "limit" and v},
                                    limit=min(limit * 2, MAX_PAGE))) if more else None
    return render_template("ui/journal.html", page="journal", entries=entries, values=values, problems=problems,
                           kinds=JOURNAL_KINDS, limit=limit, counts=backend.journal.counts(), more_url=more_url,
                           size=backend.journal.size, **_chrome())


@ui.get("/webhooks")
def webhooks_page():
    backend = _backend()
    job_id = request.args.get("job_id") or None
    limit = _page_limit(200)
    records = backend.webhooks.records(job_id)
    total = len(records)
    return render_template("ui/webhooks.html", page="webhooks", records=records[::-1][:limit], total=total,
                           job_id=job_id or "", **_chrome())


@ui.get("/controls")
def controls_page():
    backend = _backend()
    return render_template("ui/controls.html", page="controls", faults=backend.faults.rules(),
                           config=_pretty(config_body(backend.config)), lifecycle=backend.config.lifecycle,
                           **_chrome())


# -- images -------------------------------------------------------------------------------------------

class _Thumbnails:
    """Scaled-down images by (job id, sample, created at), least recently used dropped past a byte bound."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.size = max_bytes, 0
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: tuple, data: bytes) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = data
            self.size += len(data)
            while self.size > self.max_bytes and self._items:
                self.size -= len(self._items.popitem(last=False)[1])


def _download(view: JobView, index: int):
    """The job's ``index``-th image (1-based) through ``MockBackend.image``, keyed as its download URL is."""
    if view.status != SUCCESS or not view.download_urls or not 1 <= index <= len(view.download_urls):
        raise _no_image(f"job is {view.status}: no image to show" if view.status != SUCCESS else "no such image")
    key = unquote(view.download_urls[index - 1].rsplit("/", 1)[1])
    return _backend().image(key, view.request.direct_link)


def _no_image(message: str) -> MockError:
    return NotFound(FieldError("image", "exists", message))


@ui.get("/thumb/<int:index>/<anything:job_id>")
def thumbnail(index: int, job_id: str):
    """A PNG at most ``THUMB_PX`` on its longer side; only for a SUCCESS job (others show a placeholder)."""
    view = _backend().job(job_id)
    cache = current_app.extensions.setdefault("sd35_ui_thumbnails", _Thumbnails(THUMB_CACHE_BYTES))
    key = (view.id, index, view.created_at)
    data = cache.get(key)
    if data is None:
        with Image.open(io.BytesIO(_download(view, index).data)) as image:
            image.draft("RGB", (THUMB_PX, THUMB_PX))  # JPEG: decode at a smaller scale straight away
            image.thumbnail((THUMB_PX, THUMB_PX))
            out = io.BytesIO()
            image.convert("RGB").save(out, "PNG")
        data = out.getvalue()
        cache.put(key, data)
    response = Response(data, mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=3600"  # the URL names the job's creation time
    return response


@ui.get("/image/<int:index>/<anything:job_id>")
def full_image(index: int, job_id: str):
    download = _download(_backend().job(job_id), index)
    response = Response(download.data, mimetype=download.content_type)
    response.headers["Content-Disposition"] = f'inline; filename="{quote(download.file_name)}"'
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


__all__ = ["ui"]
