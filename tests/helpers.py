"""Where the provider's page and its own example live (receivers, launchers and the control client are
``mockserver.testing``)."""

from __future__ import annotations

import random
import socket
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO.parent / "shared" / "api" / "sd3_5-v1.txt"
PAGE_EXAMPLE = REPO / "tests" / "data" / "page_example.py"
PAGE_URL = "https://api.imagepipeline.io/sd3_5/v1"


def race(call, threads: int, refused: type[BaseException]) -> tuple[list, int]:
    """``call()`` from ``threads`` threads released at once: what the calls returned, and how many raised
    ``refused`` (any other exception fails the calling test through a missing result)."""
    import threading

    start, results, refusals = threading.Barrier(threads), [], []

    def one() -> None:
        start.wait()
        try:
            results.append(call())
        except refused:
            refusals.append(1)

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results, len(refusals)


@contextmanager
def refused_port():
    """A port held bound but not listening for the block: connecting there is refused, every time. A port
    closed again would be free for another worker's server (or an outgoing connection) a moment later."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def fixed_port() -> int:
    """A free port below the kernel's ephemeral range, for a command told to listen on a port of its own.
    A port from ``bind(0)`` is in that range, where the parallel workers' servers and outgoing connections
    may take it before the command binds (CI saw ``Address already in use`` so)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    pick = random.Random()
    for _ in range(200):
        port = pick.randrange(max(1024, low - 12000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port below {low}")
