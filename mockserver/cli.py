"""``sd35-mock``: serve the twin with waitress. Every option has an environment variable, and
every value is checked before anything starts: a bad one exits 2 with one line naming the option, or the
variable it came from. Options that cannot both hold (two ways of timing the lifecycle) are refused, naming
both; an option on the command line replaces what the environment says about the same thing."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import urllib.request
from urllib.parse import urlsplit

from .backend import MockBackend
from .config import MAX_CREDITS, MockConfig, load_profile
from .errors import FieldError, InvalidRequest, MockError
from .webhooks import is_loopback_host


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line naming the option, not argparse's usage block above it."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def parse_args(self, args=None, namespace=None):
        """The command line, then each option it does not give from its SD35_MOCK_* variable (named in any
        error about its value), then the default. ``args.source`` maps each option to what set it."""
        parsed = super().parse_args(args, namespace)
        _from_environment(self, parsed)
        return parsed


# The lifecycle's timings, from the command line or else (none there) from the environment.
LIFECYCLE_OPTIONS = ("pending_seconds", "pending_polls", "manual")
# Pairs of them that cannot both hold, and why: given both, one would silently win.
CONFLICTS = {
    ("manual", "pending_seconds"): "jobs either wait for the control plane or finish after the seconds",
    ("manual", "pending_polls"): "jobs either wait for the control plane or finish on the N-th poll",
}
# --pending-seconds S with --pending-polls N is one lifecycle (polls_and_seconds: the N-th read once S seconds have
# passed, what the matrix uses so every app meets PENDING); only S = 0 (done at submit) contradicts N.


def _env(name: str, default=None):
    return os.environ.get(f"SD35_MOCK_{name}", default)


def _with_env(action: argparse.Action, name: str, default: str | bool | None = None) -> argparse.Action:
    """Give ``action`` (added with ``default=None``) its variable SD35_MOCK_<name> and its real default."""
    action.env_name, action.env_default = f"SD35_MOCK_{name}", default
    return action


def _convert(parser: argparse.ArgumentParser, action: argparse.Action, text: str, blame: str):
    """``text`` through the option's type, an error naming ``blame`` (the variable) if it does not fit."""
    if isinstance(action, argparse._StoreTrueAction):
        return text not in ("", "0", "false")
    if action.type is None:
        return text
    try:
        return action.type(text)
    except argparse.ArgumentTypeError as exc:
        parser.error(f"{blame}: {exc}")
    except (TypeError, ValueError):
        parser.error(f"{blame}: invalid {getattr(action.type, '__name__', 'value')} value: {text!r}")


def _given(value) -> bool:
    """Set by the command line or a variable: a value, or a flag that is on (0 and 0.0 are values)."""
    return value is not None and value is not False


def _from_environment(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    args.source = {}
    on_command_line = {dest for dest in LIFECYCLE_OPTIONS if _given(getattr(args, dest, None))}  # (proxy: none)
    timings = [dest for dest in LIFECYCLE_OPTIONS if dest in on_command_line]
    for action in parser._actions:
        name = getattr(action, "env_name", None)
        if name is None:
            continue
        args.source[action.dest] = action.option_strings[0]
        if _given(getattr(args, action.dest)):
            continue
        text = os.environ.get(name)
        lifecycle_elsewhere = action.dest in LIFECYCLE_OPTIONS and on_command_line
        if text is None or lifecycle_elsewhere:  # the command line's timing replaces the environment's
            value = action.env_default
            if isinstance(value, str):
                value = _convert(parser, action, value, action.option_strings[0])
        else:
            args.source[action.dest] = name
            value = _convert(parser, action, text, name)
            if action.dest in LIFECYCLE_OPTIONS and _given(value):
                timings.append(action.dest)
        setattr(args, action.dest, value)
    if getattr(args, "credits", None) is None and _env("CREDITS"):
        args.source["credits"] = "SD35_MOCK_CREDITS"
    for (first, second), why in CONFLICTS.items():
        if first in timings and second in timings:
            named = [args.source[first], args.source[second]]
            parser.error(f"{' and '.join(named)} cannot both be given: {why} (give one)")
    if "pending_seconds" in timings and "pending_polls" in timings and args.pending_seconds == 0:
        parser.error(f"{args.source['pending_seconds']} 0 and {args.source['pending_polls']} cannot both be given: "
                     "jobs finish either at once or on the N-th poll (give one)")


def _whole(low: int, high: int):
    """An argparse type: a whole number from ``low`` to ``high`` (``int`` alone takes -1 and 80000, which
    waitress turns into a traceback or, modulo 65536, another port)."""
    def whole(text: str) -> int:
        if not (text.isascii() and text.isdigit() and len(text) <= len(str(high)) and low <= int(text) <= high):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a whole number from {low} to {high}")
        return int(text)
    return whole


def _credit(text: str) -> tuple[str, int]:
    """An argparse type: ``KEY=N``, a key's credit balance (ledger row 29), N a whole number."""
    key, sep, count = text.rpartition("=")
    if not (sep and key and count.isascii() and count.isdigit() and int(count) <= MAX_CREDITS):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be KEY=N, N a whole number from 0 to "
                                         f"{MAX_CREDITS}")
    return key, int(count)


def _env_credits(text: str) -> dict[str, int]:
    """SD35_MOCK_CREDITS (``k1=5,k2=0``), checked as ``--credits`` checks each of its values."""
    try:
        return dict(_credit(item.strip()) for item in text.split(",") if item.strip())
    except argparse.ArgumentTypeError as exc:
        raise InvalidRequest(FieldError("credits", "pattern", str(exc))) from None


def _host(text: str) -> str:
    """An argparse type: an IP address, or a name that resolves (one lookup, before anything starts)."""
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if not text or all(c.isdigit() or c == "." for c in text):  # 999.1.1.1: a bad address, not a name
        problem = "not an IP address"
    else:
        try:
            socket.getaddrinfo(text, None, proto=socket.IPPROTO_TCP)
            return text
        except (OSError, UnicodeError) as exc:
            problem = f"does not resolve ({exc})"
    raise argparse.ArgumentTypeError(f"invalid address {text!r}: {problem}; give an IP address such as 127.0.0.1 "
                                     f"or 0.0.0.0, or a host name")


def _public_url(text: str) -> str:
    """An argparse type: an http(s) URL with a host, the base of every download URL."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid URL {text!r}: {exc}") from None
    if any(c.isspace() or not c.isprintable() for c in text) or parts.scheme not in ("http", "https") \
            or not parts.hostname or not all(c.isalnum() or c in ".-_:" for c in parts.hostname) \
            or "?" in text or "#" in text:  # even empty: "https://h/?" would end every download URL's path
        raise argparse.ArgumentTypeError(f"invalid URL {text!r}: must be http:// or https:// with a host name, no "
                                         f"spaces or control characters, no query or fragment")
    return text


def _by_option(parser: argparse.ArgumentParser, error: FieldError, source: dict[str, str] | None = None) -> str:
    """A config error as argparse words it: "failure_rate" → "argument --failure-rate: ...", and
    "profile.limits.x" → "argument --profile: limits.x: ..."; or "SD35_MOCK_FAILURE_RATE: ..." when the value
    came from that variable (``source``: option → what set it)."""
    options = {action.dest: action.option_strings[0] for action in parser._actions if action.option_strings}
    field, _, inner = error.field.partition(".")
    named = (source or {}).get(field, options.get(field, field))
    label = named if named.startswith("SD35_MOCK_") else f"argument {named}"
    return f"{label}: {inner + ': ' if inner else ''}{error.message}"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="sd35-mock",
        description="An offline twin of the ImagePipeline SD3.5 API (POST /sd3_5/v1, GET /sd3_5/v1/status/{id}).",
        epilog="Every option also reads SD35_MOCK_<NAME> from the environment, e.g. SD35_MOCK_PORT=9000, "
               "SD35_MOCK_API_KEYS=k1,k2, SD35_MOCK_CREDITS=k1=5,k2=0; an option given on the command line wins (a "
               "lifecycle option over every lifecycle variable). The control plane is under /__mock__/; the OpenAPI document at /openapi.json.",
    )
    _with_env(p.add_argument("--host", type=_host, help="address to bind (default 127.0.0.1; another address warns "
                                                        "unless --control-token is set)"), "HOST", "127.0.0.1")
    _with_env(p.add_argument("--port", type=_whole(0, 65535), help="port (default 8080; 0 picks a free one)"),
              "PORT", "8080")
    keys = [k for k in _env("API_KEYS", "").split(",") if k]
    p.add_argument("--api-key", dest="api_keys", action="append", default=None, metavar="KEY",
                   help="accept only this key (repeatable); with none, any non-empty key is accepted")
    p.set_defaults(env_keys=keys)
    p.add_argument("--credits", type=_credit, action="append", default=None, metavar="KEY=N",
                   help="KEY has N credits (repeatable); each image of an accepted submit spends one, and a submit "
                        "past the balance is refused (402); a key not named has no limit")
    p.set_defaults(env_credits=_env("CREDITS", ""))
    # The lifecycle's timings: two of them together are refused after parsing (CONFLICTS), from either source.
    _with_env(p.add_argument("--pending-seconds", type=float,
                                  help="seconds a job stays PENDING (default 2; 0 means jobs finish at once)"),
              "PENDING_SECONDS")  # None: not given (config_from_args applies the default, 2)
    _with_env(p.add_argument("--pending-polls", type=_whole(1, 1_000_000),
                                  help="instead: a job finishes on its N-th status poll (N >= 1); with "
                                        "--pending-seconds S > 0, both: on the first read that is the N-th or later "
                                        "once the seconds have passed (a job with a webhook: after the seconds)"),
              "PENDING_POLLS")
    _with_env(p.add_argument("--manual", action="store_true", default=None,
                                  help="instead: jobs stay PENDING until the control plane completes or fails them"),
              "MANUAL", False)
    _with_env(p.add_argument("--failure-rate", type=float, help="share of jobs that end in FAILURE (0..1, default 0)"),
              "FAILURE_RATE", "0")
    _with_env(p.add_argument("--seed", type=int, help="seed for ids, failures and faults"), "SEED")
    _with_env(p.add_argument("--public-url", type=_public_url, help="base of download URLs (behind a proxy or in a "
                                                                   "container); default: the request's host"), "PUBLIC_URL")
    _with_env(p.add_argument("--profile", help="JSON file overriding the assumed behaviours"), "PROFILE")
    p.add_argument("--webhook-allow-host", dest="webhook_allow_hosts", action="append",
                   default=[h for h in _env("WEBHOOK_ALLOW_HOSTS", "").split(",") if h], metavar="HOST",
                   help="deliver webhooks to this host too (loopback is always allowed; '*' allows any)")
    _with_env(p.add_argument("--max-jobs", type=int, help="jobs kept at most"), "MAX_JOBS", "10000")
    _with_env(p.add_argument("--threads", type=_whole(1, 256), help="threads serving requests (default 4: more only "
                                                                   "add GIL contention, fewer cost throughput)"),
              "THREADS", "4")
    _with_env(p.add_argument("--control-token", metavar="TOKEN",
                             help="every control-plane call must send this token in the X-Mock-Token header (prefer "
                                  "SD35_MOCK_CONTROL_TOKEN: other users can see arguments)"), "CONTROL_TOKEN")
    _with_env(p.add_argument("--no-control-plane", action="store_true", default=None,
                             help="serve no control plane: every path under /__mock__/ is a 404"),
              "NO_CONTROL_PLANE", False)
    _with_env(p.add_argument("--quiet", action="store_true", default=None, help="log warnings only"), "QUIET", False)
    return p


def config_from_args(args: argparse.Namespace) -> MockConfig:
    seconds, polls = args.pending_seconds, args.pending_polls
    if seconds == 0 and polls is not None:  # at once, and on the N-th poll: both cannot hold
        raise InvalidRequest(FieldError("pending_seconds", "conflict", "0 (done at submit) cannot be combined with "
                                        "--pending-polls (done on a later poll): give one of them"))
    if args.manual:
        lifecycle = "manual"
    elif polls is not None:
        lifecycle = "polls" if seconds is None else "polls_and_seconds"
    elif seconds == 0:
        lifecycle = "immediate"
    else:
        lifecycle = "seconds"
    return MockConfig(
        api_keys=tuple(args.api_keys if args.api_keys is not None else args.env_keys),
        credits=dict(args.credits) if args.credits is not None else _env_credits(args.env_credits),
        lifecycle=lifecycle, pending_seconds=2.0 if seconds is None else seconds,
        pending_polls=args.pending_polls if args.pending_polls is not None else 2,
        failure_rate=args.failure_rate, seed=args.seed, public_url=args.public_url,
        profile=load_profile(args.profile), max_jobs=args.max_jobs,
        webhook_allow_hosts=tuple(args.webhook_allow_hosts),
        control_token=args.control_token, control_plane=not args.no_control_plane,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["matrix"]:  # sd35-mock matrix -- COMMAND: run an app against every variant (matrix.py)
        from .matrix import main as matrix_main
        return matrix_main(argv[1:])
    if argv[:1] == ["proxy"]:  # sd35-mock proxy --upstream URL: check an app's live calls (proxy.py)
        from .proxy import main as proxy_main
        return proxy_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except MockError as exc:  # a value the config refuses: named by the option (or variable) that set it
        parser.error("; ".join(_by_option(parser, e, args.source) for e in exc.errors))
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .http import create_app
    from .http.guard import serving_at
    from .server import make_server, server_url, tune_serving_process

    tune_serving_process()
    backend = MockBackend(config)
    app = create_app(backend=backend)
    try:
        server = make_server(app, args.host, args.port, args.threads, config.max_body_bytes)
    except OSError as exc:
        print(f"sd35-mock: cannot listen on {args.host}:{args.port}: {exc}{_who_holds(args.host, args.port, exc)}",
              file=sys.stderr)
        return 2
    serving_at(app, args.host, server.effective_port)
    # SIGTERM ends the mock as Ctrl-C does. Without a handler, a container's first process (PID 1) ignores
    # it, and `docker stop` waits 10 s before it kills. From here on every line is inside the try: a signal
    # that lands while the ready line is being printed must still end the mock with 0.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        if config.control_plane and config.control_token is None and not is_loopback_host(args.host):
            print(f"sd35-mock: warning: --host {args.host} can be reached from other machines, and the control "
                  f"plane has no token: anyone who reaches the mock can drive /__mock__/ (set "
                  f"SD35_MOCK_CONTROL_TOKEN, or --no-control-plane)", file=sys.stderr, flush=True)
        print(f"sd35-mock listening on {server_url(server, args.host)}", flush=True)
        gc.freeze()
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        backend.close()
    return 0


def _who_holds(host: str, port: int, error: OSError) -> str:
    """For a port in use: whether a twin already answers there (its /openapi.json, served even without a
    control plane), and the way out."""
    if port == 0 or "in use" not in str(error).lower():
        return ""
    asked = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{'[' + asked + ']' if ':' in asked else asked}:{port}"
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
        with opener.open(f"{url}/openapi.json", timeout=2) as answer:
            twin = "offline twin" in json.loads(answer.read(1_000_000)).get("info", {}).get("title", "")
    except (OSError, ValueError, AttributeError):
        twin = False
    if twin:
        return f". A twin already answers there ({url}): use it, stop it, or start this one on a free port with --port 0"
    return ". Another program holds it (not a twin): choose another port, or --port 0 for a free one"


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt
