"""Where the provider's page and its own example live (receivers, launchers and the control client are
``mockserver.testing``)."""

from __future__ import annotations

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
