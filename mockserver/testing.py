"""What a test needs around a running mock, one of each: the control-plane client, a webhook receiver,
and a launcher of ``sd35-mock``.

Public and HTTP-only (no import of the mock's internals), so the pytest fixtures, the contract suite, our
own tests, the benchmark and users' tests all drive a mock the same way, whether it runs in this process,
in a subprocess or in a container.

    with launch("--pending-seconds", "0") as mock, WebhookReceiver() as hooks:
        control = MockControl(mock.url)
        control.configure(lifecycle="manual")
        ...

A mock started with ``--control-token T`` wants ``MockControl(url, token=T)``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

__all__ = ["ControlError", "MockControl", "WebhookReceiver", "WebhookCall", "LaunchedMock", "launch",
           "close_session", "describe_requests", "TOKEN_HEADER"]

TOKEN_HEADER = "X-Mock-Token"  # the control token's header (mockserver.http.guard; this module speaks HTTP only)


class ControlError(AssertionError):
    """The control plane answered something other than what the call expects (an AssertionError, so a
    test that trips it fails rather than errors)."""

    def __init__(self, method: str, path: str, response: requests.Response):
        self.status_code = response.status_code
        self.body = response.text[:500]
        super().__init__(f"control plane {method} /__mock__{path} answered HTTP {self.status_code}: {self.body}")


class MockControl:
    """The mock's control plane (``/__mock__/``) over HTTP. It needs no API key; ``token`` is the mock's
    ``--control-token``, sent with every call (and only with these calls, whatever ``session`` is shared with)."""

    def __init__(self, url: str, session: requests.Session | None = None, timeout: float = 30.0, *,
                 token: str | None = None):
        self.url = url.rstrip("/")
        self.http = session or requests.Session()
        self.timeout = timeout
        self.token = token

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """The raw answer, for a test that inspects it (e.g. 409 for a terminal job)."""
        kwargs.setdefault("timeout", self.timeout)
        if self.token is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), TOKEN_HEADER: self.token}
        return self.http.request(method, f"{self.url}/__mock__{path}", **kwargs)

    def call(self, method: str, path: str, *, expect: tuple[int, ...] = (200, 201), **kwargs) -> Any:
        """The parsed JSON answer; ``ControlError`` unless the status is one of ``expect``."""
        resp = self.request(method, path, **kwargs)
        if resp.status_code not in expect:
            raise ControlError(method, path, resp)
        return resp.json() if resp.content else None

    # -- the controls ----------------------------------------------------------------------------

    def health(self) -> bool:
        try:
            return self.call("GET", "/health").get("ok") is True
        except (requests.RequestException, ControlError, ValueError, AttributeError):
            return False

    def reset(self) -> None:
        """Forget every job, record and fault; back to the start-up configuration."""
        self.call("POST", "/reset")

    def config(self) -> dict:
        return self.call("GET", "/config")

    def configure(self, **changes: Any) -> dict:
        """Change run-time behaviour (lifecycle, timing, keys, profile, ...); returns the new config."""
        return self.call("PATCH", "/config", json=changes)

    def credits(self) -> list[dict]:
        """Each key with a credit balance: ``{"key": <redacted>, "spent": N, "balance": N}``."""
        return self.call("GET", "/credits")["keys"]

    def rate_limits(self) -> dict:
        """``{"limits": {...}, "keys": [{"key": <redacted>, "requests_in_window": N, "pending": N}]}``."""
        return self.call("GET", "/rate-limits")

    def coverage(self) -> dict:
        """Which assumed ledger rows the requests met since start-up or reset (``GET /__mock__/coverage``):
        ``{"met": [{"row", "count", "first_seq", "last_seq"}], "never_met": [{"row", "would_meet", "risk"}],
        "resets": N}``."""
        return self.call("GET", "/coverage")

    def rows_met(self) -> set[str]:
        """The ids of the assumed rows met since start-up or reset."""
        return {entry["row"] for entry in self.coverage()["met"]}

    def advance(self, seconds: float) -> float:
        """Move the mock's clock on: jobs due by then finish, with no test sleeping."""
        return self.call("POST", "/clock/advance", json={"seconds": seconds})["now"]

    def jobs(self, **filters: Any) -> list[dict]:
        """Jobs, newest first; filters: ``key`` (the owner's API key, compared in the mock), ``batch_id``, ``status``,
        ``limit``."""
        return self.call("GET", "/jobs", params={"limit": 10_000, **filters})["jobs"]

    def job(self, job_id: str) -> dict:
        return self.call("GET", "/jobs/" + job_id)

    def complete(self, job_id: str) -> dict:
        return self.call("POST", f"/jobs/{job_id}/complete")

    def fail(self, job_id: str, error: str = "Image generation failed (forced)") -> dict:
        return self.call("POST", f"/jobs/{job_id}/fail", json={"error": error})

    def journal(self, limit: int | None = None) -> list[dict]:
        return self.call("GET", "/journal", params={"limit": limit} if limit else None)["requests"]

    def clear_journal(self) -> None:
        """Empty the journal and zero its counts."""
        self.call("DELETE", "/journal")

    # -- verification: what the app under test sent -----------------------------------------------

    def requests(self, **filters: Any) -> list[dict]:
        """Journaled requests, oldest first, matching every filter (``GET /__mock__/journal``, docs/wire.md):
        ``method``, ``path``, ``path_prefix``, ``kind`` (submit, status, download, other), ``key`` (the API-Key
        sent; entries stay redacted), ``batch_id``, ``job_id``, ``status``, ``rule`` (the id of the rule that
        applied), ``since`` (a ``seq``), ``limit``."""
        return self.call("GET", "/journal", params={k: v for k, v in filters.items() if v is not None})["requests"]

    def counts(self) -> dict:
        """Counts of every journaled request since start-up or reset, whatever the journal's cap: ``total``,
        ``by_kind``, ``by_status``, ``by_kind_status``, ``submits_by_batch_id`` (bounded) and ``other_batch_ids``."""
        return self.call("GET", "/journal/counts")

    def assert_submits(self, n: int, **filters: Any) -> list[dict]:
        """Exactly ``n`` submits (``POST /sd3_5/v1``) matching ``filters`` reached the mock; returns them."""
        found = self.requests(kind="submit", **filters)
        if len(found) != n:
            raise AssertionError(f"expected {n} submit(s){_described(filters)}, found {len(found)}:\n"
                                 + describe_requests(found))
        return found

    def assert_no_duplicate_submit(self, batch_id: str | None = None, status: int | None = None,
                                   **filters: Any) -> None:
        """No two submits of one job: none with the same API key and the same body (compared as canonical JSON:
        key order and spacing do not matter), and none with the same ``batch_id``. Every submit counts but those
        refused with a 4xx, which create no job (a 429 then a correct retry passes); one answered 5xx or never
        answered counts, since a client cannot tell that it created no job. ``status=`` compares only submits
        answered that (``status=429`` the refused ones too); ``batch_id=`` only that batch's; other filters as
        ``requests()``. The failure lists each duplicate group and its requests."""
        found = self.requests(kind="submit", batch_id=batch_id, status=status, **filters)
        if status is None:
            found = [e for e in found if not 400 <= e["status"] < 500]
        groups: dict[tuple, list[dict]] = {}
        for entry in found:
            if "batch_id" in entry:
                groups.setdefault(("batch_id", entry["batch_id"]), []).append(entry)
            if "body_digest" in entry:
                groups.setdefault(("body", entry.get("api_key_id"), entry["body_digest"]), []).append(entry)
        duplicated = {group: entries for group, entries in groups.items() if len(entries) > 1}
        if duplicated:
            raise AssertionError("duplicate submits: " + "; ".join(
                f"batch_id {group[1]!r} submitted {len(entries)} times" if group[0] == "batch_id" else
                f"the same body with the same key submitted {len(entries)} times "
                f"(#{', #'.join(str(e['seq']) for e in entries)})"
                for group, entries in duplicated.items()) + ":\n"
                + describe_requests(sorted({e["seq"]: e for group in duplicated.values() for e in group}.values(),
                                           key=lambda e: e["seq"])))

    def assert_poll_interval(self, job_id: str, at_least: float) -> None:
        """Consecutive status reads of ``job_id`` were at least ``at_least`` seconds apart (the journal's ``at``:
        when each was answered, by the mock's clock). No status read of the job at all fails too."""
        reads = self.requests(kind="status", job_id=job_id)
        if not reads:
            raise AssertionError(f"no status read of job {job_id!r} in the journal")
        early = [(a, b) for a, b in zip(reads, reads[1:]) if b["at"] - a["at"] < at_least]
        if early:
            gaps = ", ".join(f"#{b['seq']} {b['at'] - a['at']:.3f} s after #{a['seq']}" for a, b in early)
            raise AssertionError(f"job {job_id!r} polled sooner than every {at_least:g} s ({gaps}):\n"
                                 + describe_requests(reads))

    def assert_retry_after_honoured(self, kind: str | None = None, tolerance: float = 0.01,
                                    **filters: Any) -> None:
        """After each answer carrying ``Retry-After: S`` (whole or decimal seconds; an HTTP-date is not
        checked), the next request of the same kind (submit, status, download, other) among those matching
        ``filters`` (e.g. ``key=``) arrived at least S seconds after that answer: its arrival (``at`` minus its
        ``duration_ms``) minus the answer's ``at``, less ``tolerance``. Only answers of ``kind`` when given; an
        answer with no later request of its kind passes."""
        entries = self.requests(**filters)
        problems, shown = [], []
        for i, answer in enumerate(entries):
            try:
                wait = float(answer.get("retry_after", ""))
            except ValueError:
                continue
            if kind is not None and answer["kind"] != kind:
                continue
            following = next((e for e in entries[i + 1:] if e["kind"] == answer["kind"]), None)
            if following is None:
                continue
            waited = following["at"] - following["duration_ms"] / 1000 - answer["at"]
            if waited < wait - tolerance:
                problems.append(f"#{following['seq']} came {waited:.3f} s after #{answer['seq']} answered "
                                f"Retry-After: {answer['retry_after']}")
                shown += [answer, following]
        if problems:
            raise AssertionError("Retry-After not honoured: " + "; ".join(problems) + ":\n" + describe_requests(shown))

    def webhooks(self, job_id: str | None = None, wait: float = 10.0) -> list[dict]:
        """Webhook delivery records, once none is queued or in flight (waiting up to ``wait`` s)."""
        params: dict[str, Any] = {"wait": f"{wait:g}"}
        if job_id is not None:
            params["job_id"] = job_id
        return self.call("GET", "/webhooks", params=params)["deliveries"]

    def resend_webhook(self, job_id: str, url: str | None = None) -> dict:
        """Send the job's webhook again (to ``url`` if given); the attempts appear in ``webhooks(job_id)``."""
        return self.call("POST", f"/jobs/{job_id}/webhook", json={"url": url} if url else {}, expect=(202,))

    # -- rules: outcomes for the requests that match them (docs/wire.md, "Rules") --------------------

    def add_rule(self, match: dict | None = None, **effect: Any) -> dict:
        """Add a rule; returns it with its ``id``. ``match``: any of ``api_key``, ``batch_id``,
        ``prompt_contains``, ``prompt_pattern`` (RE2), ``headers`` ({name: value}); effect: ``lifecycle``,
        ``pending_seconds``, ``pending_polls``, ``outcome`` (``error``), ``fault`` (a fault rule), ``times``.
        E.g. ``add_rule({"batch_id": "b1"}, outcome="FAILURE", error="nsfw")``."""
        return self.call("POST", "/rules", json={"match": match or {}, **effect})

    def rules(self) -> list[dict]:
        return self.call("GET", "/rules")["rules"]

    def remove_rule(self, rule_id: str) -> None:
        self.call("DELETE", f"/rules/{rule_id}")

    def clear_rules(self) -> None:
        self.call("DELETE", "/rules")

    def fault(self, **rule: Any) -> dict:
        """Inject a fault (see docs/wire.md): e.g. ``fault(endpoint="submit", type="status", status=503)``."""
        return self.call("POST", "/faults", json=rule)

    def faults(self) -> list[dict]:
        return self.call("GET", "/faults")["faults"]

    def clear_faults(self) -> None:
        self.call("DELETE", "/faults")

    def stats(self) -> dict:
        return self.call("GET", "/stats")

    def close(self) -> None:
        close_session(self.http)


def describe_requests(entries: list[dict], limit: int = 50) -> str:
    """Journal entries as lines for a failure message: seq, method, path, status, at (and ids, Retry-After)."""
    lines = []
    for e in entries[:limit]:
        extra = "".join(f" {name}={e[name]!r}" for name in ("job_id", "batch_id", "retry_after", "fault", "rule")
                        if name in e)
        lines.append(f"  #{e['seq']} {e['method']} {e['path']} -> {e['status']} at={e['at']:.3f}{extra}")
    if len(entries) > limit:
        lines.append(f"  ... and {len(entries) - limit} more")
    return "\n".join(lines) if lines else "  (no matching request)"


def _described(filters: dict) -> str:
    return (" matching " + ", ".join(f"{k}={v!r}" for k, v in filters.items())) if filters else ""


def close_session(session: requests.Session) -> None:
    """Really drop a session's keep-alive connections (urllib3 2.x leaves a cleared pool's sockets to
    the garbage collector), so a server can stop at once."""
    for adapter in session.adapters.values():
        pools = getattr(getattr(adapter, "poolmanager", None), "pools", None)
        if pools is not None:
            for key in list(pools.keys()):
                try:
                    pools[key].close()
                except KeyError:
                    pass
    session.close()


# -- webhooks -----------------------------------------------------------------------------------

@dataclass
class WebhookCall:
    """One POST that reached the receiver, and what it answered."""

    path: str
    headers: dict[str, str]
    raw: bytes
    answered: int
    at: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.raw)
        except ValueError:
            return None


class WebhookReceiver:
    """An HTTP endpoint on 127.0.0.1 that records every POST and answers ``status`` (with ``answer_headers``).
    ``fail_next = N`` answers the next N calls with HTTP 500 (to see retries); ``hold()`` keeps calls
    waiting for their answer until ``release()`` (a slow receiver; they are recorded on arrival).

        with WebhookReceiver() as hooks:
            submit(..., webhook=hooks.url)
            [call] = hooks.wait_for(1)
            assert call.json["status"] == "SUCCESS"
    """

    def __init__(self, status: int = 200, host: str = "127.0.0.1"):
        self.status = status
        self.answer_headers: dict[str, str] = {}
        self.fail_next = 0
        self.calls: list[WebhookCall] = []
        self._arrived = threading.Condition()
        self._released = threading.Event()
        self._released.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                length = min(int(self.headers.get("Content-Length") or 0), 16 * 1024 * 1024)
                raw = self.rfile.read(length)
                with receiver._arrived:
                    failing = receiver.fail_next > 0
                    receiver.fail_next -= failing
                    answered = 500 if failing else receiver.status
                    receiver.calls.append(WebhookCall(self.path, dict(self.headers), raw, answered))
                    receiver._arrived.notify_all()
                receiver._released.wait(30)  # arrived (and counted) first, answered once released
                self.send_response(answered)
                for name, value in receiver.answer_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a sender that timed out and hung up is expected

        self._server = Server((host, 0), Handler)
        self.url = f"http://{host}:{self._server.server_port}/hook"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def bodies(self) -> list[Any]:
        """The JSON of every call answered with success, in arrival order."""
        with self._arrived:
            return [c.json for c in self.calls if c.answered < 300]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[WebhookCall]:
        """Every call so far, once at least ``count`` arrived (or ``timeout`` passed)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.calls) >= count, timeout=timeout)
            return list(self.calls)

    def expect(self, count: int, timeout: float = 10.0) -> list[WebhookCall]:
        """Like ``wait_for``, but an ``AssertionError`` showing every call that did arrive if fewer than
        ``count`` came within ``timeout``."""
        calls = self.wait_for(count, timeout)
        if len(calls) < count:
            raise AssertionError(f"expected {count} webhook call(s) within {timeout:g} s, got {len(calls)}:\n"
                                 + self.describe())
        return calls

    def describe(self) -> str:
        """One line per call that arrived: its order, what it answered, and its JSON's status, id and batch_id."""
        with self._arrived:
            calls = list(self.calls)
        lines = []
        for n, call in enumerate(calls, 1):
            try:
                body = call.json
            except ValueError:
                body = call.raw[:80]
            if isinstance(body, dict):
                body = " ".join(f"{k}={body[k]!r}" for k in ("status", "id", "batch_id") if k in body)
            lines.append(f"  {n}. POST {call.path} -> {call.answered}: {body}")
        return "\n".join(lines) if lines else "  (no call)"

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "WebhookReceiver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- launching ----------------------------------------------------------------------------------

@dataclass
class LaunchedMock:
    """A ``sd35-mock`` process and the URL it printed."""

    url: str
    process: subprocess.Popen
    output: list[str]
    drained: threading.Event | None = None  # set once every line of the output is in ``output``

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, as ``docker stop`` sends it; the exit code (killed if it outlives ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.drained is not None:
            self.drained.wait(5)  # its last lines, e.g. what it logged as it stopped
        return self.process.returncode

    def __enter__(self) -> "LaunchedMock":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def launch(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0,
           python: str = sys.executable, cwd: str | None = None, wrapper: tuple[str, ...] = ()) -> LaunchedMock:
    """Start ``sd35-mock --port 0 ARGS`` and wait for its "listening on" line.

    With ``"--control-token", T`` in ``ARGS`` (or ``SD35_MOCK_CONTROL_TOKEN`` in ``env``), drive it with
    ``MockControl(mock.url, token=T)``.

    ``env`` is added to this process's environment; ``wrapper`` runs the command under another (e.g.
    ``("unshare", "--pid", "--fork")``). Its output is drained by a thread (and kept in
    ``output``), so a chatty mock never blocks on a full pipe. ``RuntimeError`` with that output if it
    exits or stays silent for ``timeout`` seconds.
    """
    argv = [*wrapper, python, "-m", "sd35_twin.mockserver", "--port", "0", *args]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                               env={**os.environ, **(env or {})})
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []
    drained = threading.Event()

    def drain() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            output.append(line.rstrip("\n"))
            lines.put(line)
        drained.set()
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is not None and "listening on " in line:
            url = line.split("listening on ", 1)[1].split()[0]
            return LaunchedMock(url, process, output, drained)
        if line is None:
            if process.poll() is None:
                process.kill()
            process.wait()
            raise RuntimeError(f"python -m sd35_twin.mockserver did not start ({' '.join(args)}):\n" + "\n".join(output))
