"""The dashboard says what it shows: the header's lifecycle is labelled with its timing, a page the guard
refuses in a browser is an HTML page with the guard's explanation (and nothing of the mock's state), and a
job's page says what its rule does."""

from __future__ import annotations

import re

import pytest

from sd35_twin.mockserver import MockConfig, create_app

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
BODY = {"prompt": "a red fox", "negative_prompt": "", "num_inference_steps": 1, "samples": 1, "guidance_scale": 1}


def lifecycle_pill(page: str) -> str:
    [pill] = re.findall(r'<span class="fact" id="lifecycle"[^>]*>([^<]*)</span>', page)
    return pill


@pytest.mark.parametrize("config, text", [
    (MockConfig(lifecycle="seconds", pending_seconds=2), "lifecycle: seconds (2 s PENDING)"),
    (MockConfig(lifecycle="polls", pending_polls=3), "lifecycle: polls (done on poll 3)"),
    (MockConfig(lifecycle="immediate"), "lifecycle: immediate (done at once)"),
    (MockConfig(lifecycle="manual"), "lifecycle: manual (you finish each job)"),
])
def test_the_header_labels_the_lifecycle_with_its_timing(config, text):
    http = create_app(config).test_client()
    assert lifecycle_pill(http.get("/__mock__/ui").get_data(as_text=True)) == text
    assert http.patch("/__mock__/config", json={"lifecycle": "polls", "pending_polls": 5}).status_code == 200
    assert lifecycle_pill(http.get("/__mock__/ui/controls").get_data(as_text=True)) == "lifecycle: polls (done on poll 5)"


def test_a_refused_page_in_a_browser_is_html_with_the_explanation_and_no_state():
    http = create_app(MockConfig(lifecycle="manual")).test_client()
    http.post("/sd3_5/v1", json={**BODY, "batch_id": "secret-batch"}, headers={"API-Key": "k"})
    for path in ("/__mock__/ui", "/__mock__/ui/journal", "/__mock__/ui/controls"):
        page = http.get(path, headers={**BROWSER, "Host": "0.0.0.0:8080"})
        assert page.status_code == 403 and page.mimetype == "text/html", path
        text = page.get_data(as_text=True)
        assert "the mock refused this page" in text and "&#39;0.0.0.0:8080&#39; is not this mock&#39;s address" in text
        assert "secret-batch" not in text and 'id="facts"' not in text and "1 job" not in text
        assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    # A program (no HTML in its Accept, or */*) still gets the control plane's JSON refusal.
    for accept in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}):
        answer = http.get("/__mock__/ui", headers={**accept, "Host": "0.0.0.0:8080"})
        assert answer.status_code == 403 and answer.get_json()["errors"][0]["field"] == "Host"
    other_site = http.get("/__mock__/ui", headers={**BROWSER, "Origin": "https://evil.example"})
    assert other_site.status_code == 403 and "another site" in other_site.get_data(as_text=True)


def test_a_jobs_page_says_what_its_rule_does():
    http = create_app(MockConfig(lifecycle="manual")).test_client()
    rule = {"match": {"batch_id": "b1", "prompt_contains": "fox"}, "outcome": "FAILURE", "error": "nsfw",
            "lifecycle": "polls", "pending_polls": 2, "times": 2}
    assert http.post("/__mock__/rules", json=rule).status_code == 201
    job = http.post("/sd3_5/v1", json={**BODY, "batch_id": "b1"}, headers={"API-Key": "k"}).get_json()["id"]
    http.delete("/__mock__/rules")  # deleted since: the job's page still says what shaped it
    page = http.get(f"/__mock__/ui/job/{job}").get_data(as_text=True)
    [line] = re.findall(r'<p class="muted" id="job-rule">(.*?)</p>', page, re.S)
    words = re.sub(r"<[^>]+>", "", line).replace("&#39;", "'")
    assert words == ("Shaped by rule r1: for batch_id 'b1' and a prompt containing 'fox', it ends the job in FAILURE "
                     "with error 'nsfw'; times it polls (done on poll 2); applied 1 time of 2.")
    plain = http.post("/sd3_5/v1", json=BODY, headers={"API-Key": "k"}).get_json()["id"]
    assert 'id="job-rule"' not in http.get(f"/__mock__/ui/job/{plain}").get_data(as_text=True)
