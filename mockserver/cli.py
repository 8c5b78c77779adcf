"""``python -m mockserver``: serve the twin with waitress. Every option has an environment variable."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys

from .backend import MockBackend
from .config import MockConfig, load_profile
from .errors import MockError


def _env(name: str, default=None):
    """An option's default from SD35_MOCK_<NAME>, as text: argparse converts it with the option's type,
    so a bad value is reported like a bad option ("argument --port: invalid int value: 'x'")."""
    return os.environ.get(f"SD35_MOCK_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mockserver",
        description="An offline twin of the ImagePipeline SD3.5 API (POST /sd3_5/v1, GET /sd3_5/v1/status/{id}).",
        epilog="Every option also reads SD35_MOCK_<NAME> from the environment, e.g. SD35_MOCK_PORT=9000, "
               "SD35_MOCK_API_KEYS=k1,k2. The control plane is under /__mock__/; the OpenAPI document at /openapi.json.",
    )
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=_env("PORT", "8080"), help="port (default 8080; 0 picks a free one)")
    keys = [k for k in _env("API_KEYS", "").split(",") if k]
    p.add_argument("--api-key", dest="api_keys", action="append", default=None, metavar="KEY",
                   help="accept only this key (repeatable); with none, any non-empty key is accepted")
    p.set_defaults(env_keys=keys)
    p.add_argument("--pending-seconds", type=float, default=_env("PENDING_SECONDS", "2"),
                   help="seconds a job stays PENDING (default 2; 0 means jobs finish at once)")
    p.add_argument("--pending-polls", type=int, default=_env("PENDING_POLLS") or None,
                   help="instead: a job finishes on its N-th status poll")
    p.add_argument("--manual", action="store_true", default=_env("MANUAL", "") not in ("", "0", "false"),
                   help="instead: jobs stay PENDING until the control plane completes or fails them")
    p.add_argument("--failure-rate", type=float, default=_env("FAILURE_RATE", "0"),
                   help="share of jobs that end in FAILURE (0..1, default 0)")
    p.add_argument("--seed", type=int, default=_env("SEED") or None, help="seed for ids, failures and faults")
    p.add_argument("--public-url", default=_env("PUBLIC_URL"),
                   help="base of download URLs (behind a proxy or in a container); default: the request's host")
    p.add_argument("--profile", default=_env("PROFILE"), help="JSON file overriding the assumed behaviours")
    p.add_argument("--webhook-allow-host", dest="webhook_allow_hosts", action="append",
                   default=[h for h in _env("WEBHOOK_ALLOW_HOSTS", "").split(",") if h], metavar="HOST",
                   help="deliver webhooks to this host too (loopback is always allowed; '*' allows any)")
    p.add_argument("--max-jobs", type=int, default=_env("MAX_JOBS", "10000"), help="jobs kept at most")
    p.add_argument("--threads", type=int, default=_env("THREADS", "4"),
                   help="threads serving requests (default 4: more only add GIL contention, fewer cost throughput)")
    p.add_argument("--quiet", action="store_true", default=_env("QUIET", "") not in ("", "0", "false"),
                   help="log warnings only")
    return p


def config_from_args(args: argparse.Namespace) -> MockConfig:
    if args.manual:
        lifecycle = "manual"
    elif args.pending_polls is not None:
        lifecycle = "polls"
    elif args.pending_seconds == 0:
        lifecycle = "immediate"
    else:
        lifecycle = "seconds"
    return MockConfig(
        api_keys=tuple(args.api_keys if args.api_keys is not None else args.env_keys),
        lifecycle=lifecycle, pending_seconds=args.pending_seconds,
        pending_polls=args.pending_polls if args.pending_polls is not None else 2,
        failure_rate=args.failure_rate, seed=args.seed, public_url=args.public_url,
        profile=load_profile(args.profile), max_jobs=args.max_jobs,
        webhook_allow_hosts=tuple(args.webhook_allow_hosts),
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except MockError as exc:
        parser.error(exc.message)
    if not 1 <= args.threads <= 256:
        parser.error("--threads: must be from 1 to 256")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .http import create_app
    from .server import make_server, server_url, tune_serving_process

    tune_serving_process()
    backend = MockBackend(config)
    app = create_app(backend=backend)
    try:
        server = make_server(app, args.host, args.port, args.threads, config.max_body_bytes)
    except OSError as exc:
        print(f"sd35-mock: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    # SIGTERM ends the mock as Ctrl-C does. Without a handler, a container's first process (PID 1) ignores
    # it, and `docker stop` waits 10 s before it kills.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"sd35-mock listening on {server_url(server, args.host)}", flush=True)
    try:
        gc.freeze()
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        backend.close()
    return 0


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt
