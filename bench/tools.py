"""Locating and (idempotently) installing the benchmark's external tools.

- wrk: from Debian (`apt-get install -y wrk`), only when we are root; otherwise the Python load
  generator (bench/pyload.py) is used instead.
- WireMock and Prism: `npm install --prefix bench/.tools wiremock @stoplight/prism-cli`.
  The npm `wiremock` package is a thin Node shim (npm-java-runner) that spawns
  `java -jar <the jar matching package.json's "runnable-jar-regexp">`; we resolve that jar the same
  way and run `java -jar` ourselves, so start-up and memory are measured on the JVM process.
  Prism's bin is `@stoplight/prism-cli/dist/index.js`; we run it with `node` directly.
- matplotlib: `pip install matplotlib` (the project's `bench` extra) when missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
TOOLS_DIR = BENCH_DIR / ".tools"
NPM_PACKAGES = ["wiremock", "@stoplight/prism-cli"]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@dataclass
class Tools:
    wrk: str | None = None
    java: str | None = None
    node: str | None = None
    wiremock_jar: Path | None = None
    wiremock_version: str | None = None
    prism_entry: Path | None = None
    prism_version: str | None = None
    problems: dict | None = None  # tool -> why it is unavailable

    def describe(self) -> dict:
        return {
            "wrk": self.wrk,
            "wrk_version": tool_version([self.wrk, "--version"]) if self.wrk else None,
            "java": self.java,
            "java_version": tool_version([self.java, "-version"]) if self.java else None,
            "node": self.node,
            "node_version": tool_version([self.node, "--version"]) if self.node else None,
            "wiremock_jar": str(self.wiremock_jar) if self.wiremock_jar else None,
            "wiremock_version": self.wiremock_version,
            "prism_entry": str(self.prism_entry) if self.prism_entry else None,
            "prism_version": self.prism_version,
            "problems": self.problems or {},
        }


def tool_version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or "") + (out.stderr or "")
    first = text.strip().splitlines()
    return first[0].strip() if first else None


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def ensure_wrk(install: bool) -> tuple[str | None, str | None]:
    """Return (path to wrk, problem). Installs from Debian when missing and we are root."""
    path = shutil.which("wrk")
    if path:
        return path, None
    if not install:
        return None, "wrk not installed (--no-install)"
    if not (_is_root() and shutil.which("apt-get")):
        return None, "wrk not installed and not root (or no apt-get): using the Python load generator"
    log("wrk missing: apt-get update && apt-get install -y wrk")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        return None, f"apt-get install wrk failed: {exc}"
    path = shutil.which("wrk")
    return (path, None) if path else (None, "wrk still missing after apt-get install")


def _npm_package_dir(name: str) -> Path:
    return TOOLS_DIR / "node_modules" / name


def _npm_package(name: str) -> tuple[Path, dict | None]:
    """An installed package's folder and its package.json (None when missing or unreadable)."""
    pkg_dir = _npm_package_dir(name)
    try:
        return pkg_dir, json.loads((pkg_dir / "package.json").read_text())
    except (OSError, ValueError):
        return pkg_dir, None


def ensure_npm_tools(install: bool) -> str | None:
    """Install WireMock and Prism into bench/.tools if either is missing. Returns a problem or None."""
    missing = [p for p in NPM_PACKAGES if not (_npm_package_dir(p) / "package.json").is_file()]
    if not missing:
        return None
    if not install:
        return f"npm packages missing (--no-install): {', '.join(missing)}"
    npm = shutil.which("npm")
    if not npm:
        return "npm not found: cannot install WireMock / Prism"
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    log(f"installing {' '.join(NPM_PACKAGES)} into {TOOLS_DIR} (npm)")
    try:
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(TOOLS_DIR), *NPM_PACKAGES],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        return f"npm install failed: {exc} {err.decode(errors='replace')[-500:]}"
    return None


def find_wiremock_jar() -> tuple[Path | None, str | None]:
    """Resolve the jar the npm shim would run: files under the package matching runnable-jar-regexp."""
    pkg_dir, meta = _npm_package("wiremock")
    if meta is None:
        return None, None
    regexp = re.compile(meta.get("runnable-jar-regexp") or r"build/.*\.jar")
    found = sorted(p for p in pkg_dir.rglob("*.jar")
                   if regexp.search(p.relative_to(pkg_dir).as_posix()))
    return (found[0] if found else None), meta.get("version")


def find_prism_entry() -> tuple[Path | None, str | None]:
    pkg_dir, meta = _npm_package("@stoplight/prism-cli")
    if meta is None:
        return None, None
    bin_ = meta.get("bin")
    rel = bin_.get("prism") if isinstance(bin_, dict) else bin_
    entry = pkg_dir / (rel or "dist/index.js")
    return (entry if entry.is_file() else None), meta.get("version")


def ensure_tools(install: bool = True, need_anchors: bool = True, loadgen: str = "auto") -> Tools:
    tools = Tools(problems={})
    if loadgen in ("auto", "wrk"):
        tools.wrk, problem = ensure_wrk(install)
        if problem:
            tools.problems["wrk"] = problem
    tools.java = shutil.which("java")
    tools.node = shutil.which("node")
    if need_anchors:
        problem = ensure_npm_tools(install)
        if problem:
            tools.problems["npm"] = problem
        tools.wiremock_jar, tools.wiremock_version = find_wiremock_jar()
        tools.prism_entry, tools.prism_version = find_prism_entry()
        if not tools.java:
            tools.problems["wiremock"] = "java not found"
        elif not tools.wiremock_jar:
            tools.problems["wiremock"] = "WireMock jar not found under bench/.tools/node_modules/wiremock"
        if not tools.node:
            tools.problems["prism"] = "node not found"
        elif not tools.prism_entry:
            tools.problems["prism"] = "Prism not found under bench/.tools/node_modules/@stoplight/prism-cli"
    return tools


def ensure_matplotlib(install: bool) -> bool:
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        pass
    if not install:
        return False
    log("matplotlib missing: pip install 'matplotlib>=3.8'")
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib>=3.8"],
                       check=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        return False
    try:
        import importlib
        importlib.invalidate_caches()
        import matplotlib  # noqa: F401,F811
        return True
    except ImportError:
        return False
