"""Where the provider's page and its own example live (receivers, launchers and the control client are
``mockserver.testing``)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO.parent / "shared" / "api" / "sd3_5-v1.txt"
PAGE_EXAMPLE = REPO / "tests" / "data" / "page_example.py"
PAGE_URL = "https://api.imagepipeline.io/sd3_5/v1"
