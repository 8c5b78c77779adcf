"""The mock's configuration (``MockConfig``) and the profile of assumed values.

``MockConfig`` holds two kinds of field. Behaviour (lifecycle, timing, failure rate, keys, credits, profile, seed,
webhook policy) is what ``PATCH /__mock__/config`` changes while serving. Start-up settings (bounds,
sizes, the public URL; with the command line's host, port and threads) are fixed once the mock serves:
patching one is refused, naming it, rather than echoed and ignored.

The profile is data (``profiles/default.json``, deep-merged with a user's file) so that when a live
run shows the real value of an assumed behaviour, the mock is corrected by editing data, not code. Every
merged profile is checked whole against ``profiles/schema.json`` before it takes effect.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import FieldError, InvalidRequest
from .profile_schema import check_profile, is_status_code

# polls_and_seconds: PENDING until both pending_polls reads and pending_seconds have passed (backend._progress)
LIFECYCLES = ("immediate", "seconds", "polls", "polls_and_seconds", "manual")
MAX_CREDITS = 10**12  # a balance no test spends: larger numbers are typos


def load_default_profile() -> dict:
    text = resources.files(__package__).joinpath("profiles/default.json").read_text("utf-8")
    profile = json.loads(text)
    profile.pop("_comment", None)
    return profile


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of ``base`` with ``override`` merged in, dicts recursively, everything else replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def merged_profile(base: dict, *overrides: object) -> dict:
    """``overrides`` (a user's file, ``PATCH /__mock__/config``'s ``profile``) merged over ``base`` in turn, and
    the result checked whole against the profile schema before anyone uses it: ``InvalidRequest`` naming
    every bad key (``profile.http_status.pending``) if it fails."""
    profile = base
    for override in overrides:
        if not isinstance(override, dict):
            raise InvalidRequest(FieldError("profile", "type", "must be a JSON object"))
        override = _expand_pending({k: v for k, v in override.items() if k != "_comment"})  # _comment: a note
        try:
            profile = deep_merge(profile, override)
        except RecursionError:  # a value nested as deeply as JSON allows: never a profile
            raise InvalidRequest(FieldError("profile", "depth", "is nested too deeply")) from None
    check_profile(profile)
    return profile


def _expand_pending(override: dict) -> dict:
    """Older profiles' ``http_status.pending`` sets ``submit_pending`` and ``poll_pending`` (unless the same
    override names them). One that is no status stays as it is, so the check refuses it by its own name."""
    codes = override.get("http_status")
    if not isinstance(codes, dict) or "pending" not in codes or not is_status_code(codes["pending"]):
        return override
    codes = dict(codes)
    pending = codes.pop("pending")
    codes.setdefault("submit_pending", pending)
    codes.setdefault("poll_pending", pending)
    return {**override, "http_status": codes}


def load_profile(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """The default profile, with a user's profile file and then ``overrides`` merged over it, checked."""
    user = None
    if path:
        try:
            user = json.loads(Path(path).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidRequest(FieldError("profile", "readable", f"cannot read {path}: {exc}")) from exc
    return merged_profile(load_default_profile(), *[o for o in (user, overrides) if o is not None])


STARTUP = {"startup": True}
# Start-up settings that live on the command line only (the server is bound before any config exists).
SERVING_SETTINGS = ("host", "port", "threads")


@dataclass(frozen=True)
class MockConfig:
    """Everything that shapes the mock; frozen, changed by making a new one. Fields marked ``STARTUP``
    are fixed once serving."""

    api_keys: tuple[str, ...] = ()          # empty: any non-empty key is accepted
    # Credit balances by key (ledger row 29): a key not named here has no limit. Each image (sample) of an
    # accepted submit costs one credit. A PATCH replaces the whole map and sets these balances anew.
    credits: dict = field(default_factory=dict)
    lifecycle: str = "seconds"              # immediate | seconds | polls | polls_and_seconds | manual
    pending_seconds: float = 2.0
    pending_polls: int = 2
    failure_rate: float = 0.0
    seed: int | None = None
    profile: dict = field(default_factory=load_default_profile)
    # Webhook policy.
    webhook_timeout: float = 5.0
    webhook_max_attempts: int = 3
    webhook_backoff: float = 0.5
    webhook_allow_hosts: tuple[str, ...] = ()
    # Start-up settings. Bounds: nothing grows without limit.
    public_url: str | None = field(default=None, metadata=STARTUP)  # base of download URLs; default: the request's host
    max_jobs: int = field(default=10_000, metadata=STARTUP)
    job_ttl_seconds: float = field(default=86_400.0, metadata=STARTUP)
    journal_size: int = field(default=500, metadata=STARTUP)
    journal_body_chars: int = field(default=2_000, metadata=STARTUP)
    max_body_bytes: int = field(default=1_048_576, metadata=STARTUP)
    image_cache_bytes: int = field(default=32 * 1024 * 1024, metadata=STARTUP)
    webhook_records: int = field(default=1_000, metadata=STARTUP)
    # Who may drive the control plane (docs/wire.md): with a token, only callers sending it; or nobody.
    control_token: str | None = field(default=None, metadata=STARTUP, repr=False)
    control_plane: bool = field(default=True, metadata=STARTUP)

    def __post_init__(self) -> None:
        problems = []
        if self.lifecycle not in LIFECYCLES:
            problems.append(FieldError("lifecycle", "enum", f"must be one of {', '.join(LIFECYCLES)}"))
        if not _finite(self.pending_seconds) or self.pending_seconds < 0:
            problems.append(FieldError("pending_seconds", "minimum", "must be a finite number >= 0"))
        if not _whole(self.pending_polls) or self.pending_polls < 0:
            problems.append(FieldError("pending_polls", "minimum", "must be an integer >= 0"))
        if not _finite(self.failure_rate) or not 0 <= self.failure_rate <= 1:
            problems.append(FieldError("failure_rate", "range", "must be a number from 0 to 1"))
        if self.seed is not None and not _whole(self.seed):
            problems.append(FieldError("seed", "type", "must be an integer"))
        if any(not isinstance(k, str) or not k for k in self.api_keys):
            problems.append(FieldError("api_keys", "type", "must be non-empty strings"))
        if not isinstance(self.credits, dict) or any(
                not isinstance(k, str) or not k or not _whole(v) or not 0 <= v <= MAX_CREDITS
                for k, v in self.credits.items()):
            problems.append(FieldError("credits", "type", f"must map non-empty keys to whole numbers from 0 to "
                                                          f"{MAX_CREDITS} (null: no limit)"))
        if self.public_url is not None and (not str(self.public_url).startswith(("http://", "https://"))
                                            or "?" in str(self.public_url) or "#" in str(self.public_url)):
            # a "?" or "#" would end every download URL's path where the base ends ("https://h/?/files/…")
            problems.append(FieldError("public_url", "pattern", "must start with http:// or https:// and have no "
                                                                "query or fragment ('?' or '#')"))
        for name in ("max_jobs", "journal_size", "max_body_bytes", "webhook_max_attempts", "webhook_records"):
            if not _whole(getattr(self, name)) or getattr(self, name) < 1:
                problems.append(FieldError(name, "minimum", "must be an integer >= 1"))
        for name in ("webhook_timeout", "webhook_backoff", "job_ttl_seconds"):
            if not _finite(getattr(self, name)) or getattr(self, name) < 0:
                problems.append(FieldError(name, "minimum", "must be a finite number >= 0"))
        token = self.control_token
        if token is not None and not (isinstance(token, str) and token and all(" " < c < "\x7f" for c in token)):
            problems.append(FieldError("control_token", "pattern",
                                       "must be a non-empty text of visible ASCII characters (it is sent as a header)"))
        if not isinstance(self.control_plane, bool):
            problems.append(FieldError("control_plane", "type", "must be true or false"))
        if not isinstance(self.profile, dict):
            problems.append(FieldError("profile", "type", "must be an object"))
        elif not problems:
            check_profile(self.profile)  # a profile built in code is held to the same schema as a file's
        if problems:
            raise InvalidRequest(problems)

    def updated(self, changes: dict[str, Any]) -> "MockConfig":
        """A new config with ``changes`` applied; ``profile`` is deep-merged, unknown keys rejected."""
        if not isinstance(changes, dict):
            raise InvalidRequest(FieldError("body", "type", "must be a JSON object"))
        fixed = sorted(set(changes) & (startup_settings() | set(SERVING_SETTINGS)))
        unknown = sorted(set(changes) - {f.name for f in fields(self)} - set(fixed))
        problems = [FieldError(k, "startup", "is a start-up setting: set it on the command line, not while serving")
                    for k in fixed]
        problems += [FieldError(k, "unknown", "is not a configuration key") for k in unknown]
        if problems:
            raise InvalidRequest(problems)
        values = dict(changes)
        if "profile" in values:
            values["profile"] = merged_profile(self.profile, values["profile"])
        for name in ("api_keys", "webhook_allow_hosts"):
            if name in values:
                if not isinstance(values[name], (list, tuple)):
                    raise InvalidRequest(FieldError(name, "type", "must be a list of strings"))
                values[name] = tuple(values[name])
        if "credits" in values:  # null, or a key's null: no limit
            credits = values["credits"]
            values["credits"] = {k: v for k, v in credits.items() if v is not None} if isinstance(credits, dict) \
                else {} if credits is None else credits
        try:
            return replace(self, **values)
        except TypeError as exc:  # a value of a type the dataclass cannot take
            raise InvalidRequest(FieldError("body", "type", str(exc))) from exc

    def as_dict(self) -> dict:
        data = asdict(self)
        data["api_keys"] = [redact_key(k) for k in self.api_keys]
        data["credits"] = redacted_map(self.credits)
        data["webhook_allow_hosts"] = list(self.webhook_allow_hosts)
        return data


# What a test wants of a mock it starts (the sd35_mock fixtures, the in-process twin): jobs finish on their first
# status poll; seeded; webhooks retried at once.
TEST_SETTINGS = dict(lifecycle="polls", pending_polls=1, seed=1234, webhook_backoff=0.0)


def is_origin(url: str) -> bool:
    """Whether ``url`` is an origin and nothing more: http:// or https://, a host, a port if any, and no path,
    query, fragment, credentials or whitespace: what the in-process twin and the shadow proxy stand in for, with
    the API's paths appended to it. "?" and "#" count even with nothing after them: urlsplit reads "https://h/?"
    as no query, yet every path appended would land after the "?"."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.path in ("", "/") \
        and not any(c in url for c in "?#") and "@" not in parts.netloc and not any(c.isspace() for c in url)


def startup_settings() -> set[str]:
    """The fields of ``MockConfig`` fixed once the mock serves."""
    return {f.name for f in fields(MockConfig) if f.metadata.get("startup")}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def redacted_map(by_key: dict) -> dict:
    """``by_key`` with each key redacted; two keys that redact alike stay apart ("k1…(5 chars) #2")."""
    out: dict = {}
    for key in sorted(by_key):
        name, n = redact_key(key), 1
        while (name if n == 1 else f"{name} #{n}") in out:
            n += 1
        out[name if n == 1 else f"{name} #{n}"] = by_key[key]
    return out


def redact_key(key: str) -> str:
    """Keys never leave the mock whole: enough to tell them apart, not to reuse them."""
    return key[:2] + "…" + f"({len(key)} chars)" if len(key) > 4 else "…"
