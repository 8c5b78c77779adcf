"""Server processes: spawn, wait for the first real answer, sample memory, stop.

Memory: a background thread samples /proc/<pid>/status for the server process and its descendants.
VmHWM is the kernel's own peak resident set of a process, so the peak is exact for a single process
whatever the sampling rate; for a process tree we add up each process's VmHWM (an upper bound).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict
    seconds: float

    def json(self):
        return json.loads(self.body.decode("utf-8"))


def request(port: int, method: str, path: str, body=None, headers=None, timeout: float = 5.0) -> Answer:
    """One HTTP request to 127.0.0.1:port on a fresh connection (never anywhere else)."""
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        return Answer(resp.status, payload, {k.lower(): v for k, v in resp.getheaders()},
                      time.perf_counter() - t0)
    finally:
        conn.close()


def read_status_kb(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, val = line.split(":", 1)
                    out[key] = int(val.split()[0])
    except (OSError, ValueError):
        pass
    return out


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return kids


def process_tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(_children(p))
    return seen


PSS_EVERY = 10  # with the default 0.1 s interval: PSS once a second


def pss_kb(pid: int) -> int | None:
    """Proportional set size: a page shared by k processes counts 1/k to each (Linux 4.14+)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


class MemorySampler:
    """Samples VmHWM / VmRSS, and the summed PSS, of a process tree until stopped.

    A tree of several processes (our workers) shares pages: summed RSS counts each shared page once per
    process, summed PSS once in all. Both are reported; for a single process they differ little.
    """

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid = pid
        self.interval = interval
        self.peak_pss_kb: int | None = None
        self._count = 0
        self.hwm_kb: dict[int, int] = {}
        self.rss_samples: list[tuple[float, int]] = []  # (t, summed VmRSS kB)
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"rss-{pid}")
        self._thread.start()

    def sample(self, pss: bool | None = None) -> int:
        """One sample; PSS only every ``PSS_EVERY``-th time (or when asked), since reading it walks the
        page tables of every process in the tree and would itself slow the server down."""
        self._count += 1
        if pss is None:
            pss = self._count % PSS_EVERY == 1
        total_rss, total_pss = 0, None
        for p in process_tree(self.pid):
            st = read_status_kb(p)
            if not st:
                continue
            if st.get("VmHWM", 0) > self.hwm_kb.get(p, 0):
                self.hwm_kb[p] = st["VmHWM"]
            total_rss += st.get("VmRSS", 0)
            if pss:
                kb = pss_kb(p)
                if kb is not None:
                    total_pss = (total_pss or 0) + kb
        if total_pss is not None and total_pss > (self.peak_pss_kb or 0):
            self.peak_pss_kb = total_pss
        if total_rss:
            self.rss_samples.append((time.perf_counter() - self._t0, total_rss))
        return total_rss

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def current_rss_mb(self) -> float:
        return self.sample() / 1024.0

    @property
    def peak_mb(self) -> float:
        return sum(self.hwm_kb.values()) / 1024.0

    @property
    def peak_pss_mb(self) -> float | None:
        return None if self.peak_pss_kb is None else self.peak_pss_kb / 1024.0

    def stop(self):
        self.sample(pss=True)
        self._stop.set()
        self._thread.join(timeout=2)


@dataclass
class ServerProcess:
    name: str
    argv: list[str]
    log_path: Path
    env: dict | None = None
    cwd: str | None = None
    proc: subprocess.Popen | None = None
    sampler: MemorySampler | None = None
    t_spawn: float = 0.0
    notes: dict = field(default_factory=dict)

    def start(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.t_spawn = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
                                     start_new_session=True)
        self.sampler = MemorySampler(self.proc.pid)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, needle: str, timeout: float) -> float | None:
        """Seconds from spawn until needle appears in the log, or None."""
        deadline = self.t_spawn + timeout
        while time.perf_counter() < deadline and self.alive():
            try:
                if needle in self.log_path.read_text(errors="replace"):
                    return time.perf_counter() - self.t_spawn
            except OSError:
                pass
            time.sleep(0.005)
        return None

    def wait_first_ok(self, probe, timeout: float) -> float:
        """Seconds from spawn until probe() returns an HTTP 200 Answer. Raises RuntimeError."""
        deadline = self.t_spawn + timeout
        last = None
        while time.perf_counter() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                ans = probe(timeout=1.0)
                if ans.status == 200:
                    return time.perf_counter() - self.t_spawn
                last = f"HTTP {ans.status}: {ans.body[:200]!r}"
            except (OSError, http.client.HTTPException) as exc:
                last = repr(exc)
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} gave no 200 within {timeout:.0f}s (last: {last}); log: {self.log_tail()}")

    def stop(self):
        if self.sampler:
            self.sampler.stop()
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # our own session, created at spawn
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        if getattr(self, "_log", None):
            self._log.close()


# ------------------------------------------------------------------------- CPU accounting (noise)

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _system_busy_jiffies() -> int:
    """Busy jiffies of the whole machine (user+nice+system+irq+softirq+steal) from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0
    vals += [0] * (8 - len(vals))
    return sum(vals) - vals[3] - vals[4]  # minus idle and iowait


def _tree_cpu_jiffies(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return total


class CpuWindow:
    """CPU used during a window, in cores: by the server tree, by our finished children (the load
    generator), and by everything else on the machine (other users of the shared box: noise)."""

    def __init__(self, server_pid: int):
        import resource
        self._resource = resource
        self.server_pid = server_pid
        self.t0 = time.perf_counter()
        self.sys0 = _system_busy_jiffies()
        self.srv0 = _tree_cpu_jiffies(server_pid)
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.kids0 = ru.ru_utime + ru.ru_stime

    def close(self) -> dict:
        wall = max(1e-6, time.perf_counter() - self.t0)
        sys_s = (_system_busy_jiffies() - self.sys0) / _CLK_TCK
        srv_s = (_tree_cpu_jiffies(self.server_pid) - self.srv0) / _CLK_TCK
        ru = self._resource.getrusage(self._resource.RUSAGE_CHILDREN)
        kids_s = ru.ru_utime + ru.ru_stime - self.kids0
        return {"server_cores": round(srv_s / wall, 2), "loadgen_cores": round(kids_s / wall, 2),
                "other_cores": round(max(0.0, sys_s - srv_s - kids_s) / wall, 2),
                "machine_cores": os.cpu_count()}


def background_cores(window: float = 0.5) -> float:
    """Cores busy on the whole machine over a short window (call while our server is idle)."""
    a, t0 = _system_busy_jiffies(), time.perf_counter()
    time.sleep(window)
    return (_system_busy_jiffies() - a) / _CLK_TCK / max(1e-6, time.perf_counter() - t0)


def wait_for_quiet(max_wait: float, threshold: float, window: float = 0.5) -> tuple[float, float]:
    """Wait (at most max_wait s) until the machine's busy CPU is under threshold cores.
    Returns (seconds waited, last background level in cores)."""
    t0 = time.perf_counter()
    level = background_cores(window)
    while level > threshold and time.perf_counter() - t0 < max_wait:
        level = background_cores(window)
    return time.perf_counter() - t0, level
