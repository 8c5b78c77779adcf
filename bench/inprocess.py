"""The client's real flow in-process against the same flow over HTTP: ``ImagePipelineClient.generate`` (one
submit, polls until SUCCESS) against the twin of ``mock_sd35`` (no socket) and against a launched mock on
keep-alive HTTP, both with ``--pending-polls 2``, and the client with an adapter that answers at no cost (the
client library's own floor); rounds taking turns, the best round of each, and the ratios of the same run.
``--cpu``: the same in CPU time (this process's and the launched mock's), steadier on a shared machine.

``--profile``: cProfile's top entries of submits and status reads through the app alone (our code and Flask
under it, with no client library and no socket): the profile the hot path is measured by. ``--overhead``: CPU
microseconds per submit and per status read of our app against a bare Flask app on the same two routes, both
called in-process alike. ``--seams``: a submit and a status read through our seam, a ``responses`` callback and
Flask's test client (needs `responses`, from the test extra).

    nice -n 10 python -m bench.inprocess [--jobs 300] [--rounds 5] [--cpu] [--profile | --overhead | --seams]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time

from sd35_twin.client import ImagePipelineClient
from sd35_twin.mockserver.inprocess import DEFAULT_BASE_URL, mock_sd35
from sd35_twin.mockserver.testing import launch

PROMPT = dict(prompt="beautiful waterfall in the rainforest, anime style", negative_prompt="error, cropped",
              num_inference_steps=4, samples=1, guidance_scale=0.0)
POLLS = 2


def flows(client: ImagePipelineClient, jobs: int, server_pid: int | None = None) -> float:
    """Seconds per flow (submit and polls until done), over ``jobs`` flows; with ``CPU`` set, CPU seconds
    instead: this process's, plus the server process's when ``server_pid`` is given (less moved by other
    processes on a shared machine than wall time)."""
    clock = _cpu(server_pid) if CPU else time.perf_counter
    started = clock()
    for n in range(jobs):
        job = client.generate(**PROMPT, batch_id=f"b{n}")
        assert job.status == "SUCCESS"
    return (clock() - started) / jobs


CPU = False  # --cpu


def _cpu(server_pid: int | None):
    """A clock of CPU seconds: this process's, and the server's (from /proc, in clock ticks)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")

    def server() -> float:
        if server_pid is None:
            return 0.0
        with open(f"/proc/{server_pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick  # utime, stime

    return lambda: time.process_time() + server()


def client_for(url: str) -> ImagePipelineClient:
    return ImagePipelineClient("bench-key", url, sleep=lambda s: None)


def floor_client() -> ImagePipelineClient:
    """The client with an adapter that answers the flow (PENDING, PENDING, SUCCESS) at no cost: what the client
    library itself spends per flow, whatever answers it."""
    import requests
    from requests.adapters import BaseAdapter, HTTPAdapter
    from urllib3 import HTTPResponse

    answers = [b'{"status":"PENDING","id":"j"}', b'{"status":"PENDING","id":"j"}',
               b'{"status":"SUCCESS","id":"j","download_urls":["https://api.imagepipeline.io/files/t"]}']

    class Canned(BaseAdapter):
        calls = 0
        builder = HTTPAdapter()

        def send(self, request, **kwargs) -> requests.Response:
            body = answers[Canned.calls % 3]
            Canned.calls += 1
            raw = HTTPResponse(body=io.BytesIO(body), status=200, preload_content=False,
                               headers={"Content-Type": "application/json", "Content-Length": str(len(body))})
            return self.builder.build_response(request, raw)

        def close(self) -> None:
            pass

    client = client_for(DEFAULT_BASE_URL)
    client.session.mount(DEFAULT_BASE_URL, Canned())
    return client


def profile(jobs: int, top: int) -> str:
    """cProfile's top entries of ``jobs`` submits and twice as many status reads through the app alone (no client
    library, no socket): what one request costs us, and where."""
    body = json.dumps(PROMPT).encode()
    with mock_sd35(lifecycle="manual") as twin:
        job = twin.wsgi_answer("POST", DEFAULT_BASE_URL + "/sd3_5/v1", [("API-Key", "bench-key")], body)
        status_url = DEFAULT_BASE_URL + "/sd3_5/v1/status/" + json.loads(b"".join(iter(job.next_chunk, b"")))["id"]
        per_request_us(twin, "POST", DEFAULT_BASE_URL + "/sd3_5/v1", body, 50)  # warm
        profiler = cProfile.Profile()
        profiler.enable()
        per_request_us(twin, "POST", DEFAULT_BASE_URL + "/sd3_5/v1", body, jobs)
        per_request_us(twin, "GET", status_url, b"", 2 * jobs)
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    out.write(f"\n{jobs} submits and {2 * jobs} status reads through the WSGI app\n")
    return out.getvalue()


def per_request_us(twin, method: str, url: str, body: bytes, count: int) -> float:
    """CPU microseconds (this process's: less moved by other processes than wall time) per request of the WSGI
    app alone (no client library, no socket), body read whole."""
    headers = [("API-Key", "bench-key"), ("Content-Type", "application/json")]
    started = time.process_time()
    for _ in range(count):
        answer = twin.wsgi_answer(method, url, headers, body)
        while answer.next_chunk():
            pass
    return (time.process_time() - started) / count * 1e6


def overhead(count: int, rounds: int) -> dict:
    """Our app per request against a bare Flask app answering fixed JSON on the same two routes, both called
    the same way: what our own code (validation, hooks, journal, backend) adds over Flask."""
    from flask import Flask, Response

    bare = Flask("bare")
    bare.add_url_rule("/sd3_5/v1", "submit", lambda: Response('{"status":"PENDING","id":"x"}',
                                                              mimetype="application/json"), methods=["POST"])
    bare.add_url_rule("/sd3_5/v1/status/<job_id>", "status",
                      lambda job_id: Response('{"status":"PENDING","id":"x"}', mimetype="application/json"))
    body = json.dumps(PROMPT).encode()
    best: dict[str, float] = {}
    with mock_sd35(lifecycle="manual") as twin:
        job = twin.wsgi_answer("POST", DEFAULT_BASE_URL + "/sd3_5/v1", [("API-Key", "bench-key")], body)
        job_id = json.loads(b"".join(iter(job.next_chunk, b"")))["id"]
        flask_twin = type("Bare", (), {"wsgi_answer": lambda self, *a: _bare_answer(bare, twin, *a)})()
        cases = {"ours submit": (twin, "POST", "/sd3_5/v1", body),
                 "ours status": (twin, "GET", f"/sd3_5/v1/status/{job_id}", b""),
                 "flask submit": (flask_twin, "POST", "/sd3_5/v1", body),
                 "flask status": (flask_twin, "GET", f"/sd3_5/v1/status/{job_id}", b"")}
        for _ in range(rounds):
            for name, (target, method, path, data) in cases.items():
                us = per_request_us(target, method, DEFAULT_BASE_URL + path, data, count)
                best[name] = min(best.get(name, us), us)
                twin.clear_journal()
    result = {name: round(us, 1) for name, us in best.items()}
    result["ours over flask, submit"] = round(best["ours submit"] - best["flask submit"], 1)
    result["ours over flask, status"] = round(best["ours status"] - best["flask status"], 1)
    return result


def _bare_answer(app, twin, method, url, headers, body):
    """The twin's own WSGI call (environ and body reading), on another app."""
    real = twin.app
    twin.app = app
    try:
        return type(twin).wsgi_answer(twin, method, url, headers, body)
    finally:
        twin.app = real


def seams(count: int, rounds: int) -> dict:
    """CPU milliseconds of one submit and one status read through each seam into the same twin: ours (the
    patched ``HTTPAdapter.send``), a ``responses`` callback (how moto reaches its backends), and Flask's test
    client (no client library at all: the floor)."""
    import re

    import requests
    import responses

    body_headers = {"API-Key": "bench-key"}

    def pair(post, get) -> None:
        job = post("/sd3_5/v1")
        get(f"/sd3_5/v1/status/{job['id']}")

    def best_ms(post, get) -> float:
        for _ in range(20):
            pair(post, get)
        times = []
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(count):
                pair(post, get)
            times.append((time.process_time() - started) / count * 1000)
        return round(min(times), 3)

    def over(http):
        return (lambda path: http.post(DEFAULT_BASE_URL + path, json=PROMPT, headers=body_headers).json(),
                lambda path: http.get(DEFAULT_BASE_URL + path, headers=body_headers).json())

    result = {}
    with mock_sd35(lifecycle="manual") as twin:
        result["mock_sd35 (HTTPAdapter.send)"] = best_ms(*over(requests.Session()))

        def callback(request):
            answer = twin.wsgi_answer(request.method, request.url, request.headers.items(), request.body or b"")
            return answer.status, dict(answer.headers), answer.read_all()[0]

        with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
            for method in (responses.POST, responses.GET):
                mocked.add_callback(method, re.compile(re.escape(DEFAULT_BASE_URL) + ".*"), callback=callback)
            result["responses callback"] = best_ms(*over(requests.Session()))
        app = twin.app.test_client()
        result["flask test client"] = best_ms(
            lambda path: app.post(path, json=PROMPT, headers=body_headers).get_json(),
            lambda path: app.get(path, headers=body_headers).get_json())
    return {"ms per submit + status read (CPU)": result}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=300, help="flows per round (default 300)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per way in, taking turns (default 5)")
    ap.add_argument("--profile", action="store_true",
                    help="print cProfile's top entries of submits and status reads through the app alone")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--overhead", action="store_true",
                    help="microseconds per request of our app and of a bare Flask app, called alike in-process")
    ap.add_argument("--seams", action="store_true",
                    help="CPU ms of a submit and a status read through our seam, a responses callback and "
                         "Flask's test client")
    ap.add_argument("--cpu", action="store_true",
                    help="flows in CPU time (this process and the launched mock's) instead of wall time")
    args = ap.parse_args(argv)
    global CPU
    CPU = args.cpu
    if args.seams:
        print(json.dumps(seams(args.jobs, args.rounds), indent=2))
        return 0
    if args.overhead:
        print(json.dumps(overhead(args.jobs * 3, args.rounds), indent=2))
        return 0
    if args.profile:
        print(profile(args.jobs, args.top))
        return 0
    best = {"in-process": float("inf"), "http": float("inf"), "client floor": float("inf")}
    with launch("--pending-polls", str(POLLS), "--quiet") as mock:
        over_http, floor = client_for(mock.url), floor_client()
        with mock_sd35(pending_polls=POLLS):
            in_process = client_for(DEFAULT_BASE_URL)
            flows(over_http, 20), flows(in_process, 20), flows(floor, 20)
            for _ in range(args.rounds):
                best["http"] = min(best["http"], flows(over_http, args.jobs, mock.process.pid))
                best["in-process"] = min(best["in-process"], flows(in_process, args.jobs))
                best["client floor"] = min(best["client floor"], flows(floor, args.jobs))
        for client in (over_http, in_process, floor):
            client.close()
    result = {"flow_ms" + (" (CPU)" if CPU else ""): {k: round(v * 1000, 3) for k, v in best.items()},
              "requests_per_flow": 1 + POLLS, "jobs_per_round": args.jobs, "rounds": args.rounds,
              "in_process_speedup": round(best["http"] / best["in-process"], 2),
              # what the twin itself costs a flow beyond the client library's own work, each way in
              "speedup_beyond_the_client_floor": round((best["http"] - best["client floor"])
                                                       / max(best["in-process"] - best["client floor"], 1e-9), 2)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
