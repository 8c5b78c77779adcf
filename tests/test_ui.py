"""The dashboard at /__mock__/ui (docs/dashboard.md): pages, escaping, CSP, thumbnails, placeholders, and who may
see and drive it (the control plane's guard, and the token cookie). Flask's test client, and real HTTP where the
cookie's travel matters."""

from __future__ import annotations

import io
import re
from html import unescape
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image

from sd35_twin.mockserver.config import MockConfig
from sd35_twin.mockserver.http import create_app
from sd35_twin.mockserver.http.guard import TOKEN_COOKIE
from sd35_twin.mockserver.server import serve

KEY = {"API-Key": "ui-secret-key-77"}
TOKEN = "t0ken-for-the-dashboard"
HOSTILE_PROMPT = "<script>alert(1)</script> a fox"
HOSTILE_BATCH = 'b"><img src=x onerror=alert(2)>'
HOSTILE_ERROR = "<b>nsfw</b> & \"quoted\""
PAGES = ["/__mock__/ui", "/__mock__/ui/", "/__mock__/ui/journal", "/__mock__/ui/webhooks", "/__mock__/ui/controls"]


def request_body(**extra) -> dict:
    return {"prompt": "a red fox", "negative_prompt": "", "num_inference_steps": 4, "samples": 1,
            "guidance_scale": 0, "width": 256, "height": 256, **extra}


@pytest.fixture
def make_client():
    def make(**config):
        app = create_app(MockConfig(**{"lifecycle": "manual", "seed": 5, **config}))
        return app.test_client()
    return make


@pytest.fixture
def client(make_client):
    return make_client()


def submit(client, **extra) -> str:
    answer = client.post("/sd3_5/v1", json=request_body(**extra), headers=KEY)
    assert answer.status_code == 200, answer.json
    return answer.json["id"]


def html(response) -> str:
    assert response.mimetype == "text/html", (response.status_code, response.data[:200])
    return response.get_data(as_text=True)


def test_every_page_renders_with_a_strict_csp(client):
    job = submit(client, batch_id="b1")
    client.post(f"/__mock__/jobs/{job}/complete")
    for path in [*PAGES, f"/__mock__/ui/job/{job}"]:
        answer = client.get(path)
        assert answer.status_code == 200, path
        page = html(answer)
        assert '<meta name="viewport"' in page and "<nav" in page
        csp = answer.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), "an inline script"
        assert " style=" not in page and "<style" not in page, "an inline style"
    assert client.get("/__mock__/ui/static/dashboard.js").mimetype in ("text/javascript", "application/javascript")
    assert client.get("/__mock__/ui/static/dashboard.css").mimetype == "text/css"


def test_the_header_shows_the_mocks_facts(client):
    submit(client)
    client.post("/__mock__/clock/advance", json={"seconds": 120})
    page = html(client.get("/__mock__/ui"))
    facts = page[page.index('id="facts"'):page.index("</div>", page.index('id="facts"'))]
    assert "manual" in facts and "1 job" in facts and "clock +2 min" in facts


def test_hostile_text_is_escaped_everywhere(client):
    job = submit(client, prompt=HOSTILE_PROMPT, batch_id=HOSTILE_BATCH, webhook='http://127.0.0.1:9/h?a="<x>"')
    client.post(f"/__mock__/jobs/{job}/fail", json={"error": HOSTILE_ERROR})
    client.get(f"/sd3_5/v1/status/{job}", headers=KEY)
    for path in [*PAGES, f"/__mock__/ui/job/{job}", f"/__mock__/ui/?batch_id={HOSTILE_BATCH}"]:
        page = html(client.get(path))
        for raw in ("<script>alert", "<img src=x", "<b>nsfw", '"><img', '"<x>"'):
            assert raw not in page, (path, raw)
    gallery = html(client.get("/__mock__/ui"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a fox" in gallery
    job_page = html(client.get(f"/__mock__/ui/job/{job}"))
    assert "&lt;b&gt;nsfw&lt;/b&gt; &amp; &#34;quoted&#34;" in job_page
    assert unescape(re.search(r'batch <a class="mono" href="([^"]*)"', job_page).group(1)).endswith(
        "?batch_id=b%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%282%29%3E")
    journal = html(client.get("/__mock__/ui/journal"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in journal  # the submit's body, as text
    assert "ui-secret-key-77" not in journal and "***" in journal  # the API-Key header, redacted


def test_the_gallery_shows_key_batch_prompt_and_age_redacted_like_the_control_plane(client):
    submit(client, batch_id="batch-7", prompt="a lighthouse " * 20)
    page = html(client.get("/__mock__/ui"))
    assert "ui-secret-key-77" not in page
    assert "ui…(16 chars)" in page  # config.redacted_map's form, as /__mock__/credits and rate-limits show keys
    assert "batch-7" in page and "a lighthouse a lighthouse" in page and "…" in page
    assert re.search(r"\d+ s ago", page)


def test_thumbnails_are_small_pngs_and_full_size_is_the_download(client):
    job = submit(client, width=1024, height=768, samples=2)
    client.post(f"/__mock__/jobs/{job}/complete")
    for n in (1, 2):
        thumb = client.get(f"/__mock__/ui/thumb/{n}/{job}")
        assert thumb.status_code == 200 and thumb.mimetype == "image/png"
        assert len(thumb.data) < 200_000
        image = Image.open(io.BytesIO(thumb.data))
        assert image.format == "PNG" and max(image.size) == 256 and image.size == (256, 192)
    url = client.get(f"/sd3_5/v1/status/{job}", headers=KEY).json["download_urls"][0]
    download = client.get(urlsplit(url).path)
    full = client.get(f"/__mock__/ui/image/1/{job}")
    assert full.status_code == 200 and full.data == download.data and full.mimetype == download.mimetype
    assert client.get(f"/__mock__/ui/thumb/3/{job}").status_code == 404


def test_pending_and_failed_jobs_show_placeholders_not_images(client):
    pending, failed, done = submit(client), submit(client), submit(client)
    client.post(f"/__mock__/jobs/{failed}/fail", json={"error": "boom"})
    client.post(f"/__mock__/jobs/{done}/complete")
    page = html(client.get("/__mock__/ui"))
    tiles = {m.group(1): m.group(2) for m in re.finditer(r'<li class="tile[^"]*" data-job-id="([^"]+)"[^>]*>(.*?)</li>',
                                                          page, re.S)}
    assert "<img" not in tiles[pending] and "placeholder pending" in tiles[pending]
    assert "<img" not in tiles[failed] and "placeholder failure" in tiles[failed] and "boom" in tiles[failed]
    assert f"/__mock__/ui/thumb/1/{done}" in tiles[done]
    for job in (pending, failed):
        assert client.get(f"/__mock__/ui/thumb/1/{job}").status_code == 404
        assert "<img" not in html(client.get(f"/__mock__/ui/job/{job}")).split('<h2>Images</h2>')[1].split("</section>")[0]


def test_the_dashboard_is_never_api_traffic(client):
    """Nothing under /__mock__ is journaled or faulted: pages and thumbnails neither count nor fail."""
    job = submit(client)
    client.post(f"/__mock__/jobs/{job}/complete")
    client.delete("/__mock__/journal")
    client.post("/__mock__/faults", json={"type": "status", "status": 503, "times": 50})
    for path in [*PAGES, f"/__mock__/ui/job/{job}", f"/__mock__/ui/thumb/1/{job}", f"/__mock__/ui/image/1/{job}"]:
        assert client.get(path).status_code == 200, path
    assert client.get("/__mock__/journal").json["requests"] == []
    assert client.get("/__mock__/faults").json["faults"][0].get("applied", 0) == 0


def test_filters_and_paging_with_many_jobs(client):
    ids = [submit(client, batch_id="even" if i % 2 == 0 else "odd") for i in range(70)]
    client.post(f"/__mock__/jobs/{ids[0]}/complete")
    page = html(client.get("/__mock__/ui"))
    shown = re.findall(r'data-job-id="([^"]+)"', page)
    assert shown == ids[::-1][:60]  # newest first, 60 of them
    more = unescape(re.search(r'<a class="button" href="([^"]+)">Show more</a>', page).group(1))
    assert re.findall(r'data-job-id="([^"]+)"', html(client.get("/__mock__/ui" + more))) == ids[::-1]
    odd = re.findall(r'data-job-id="([^"]+)"', html(client.get("/__mock__/ui?batch_id=odd")))
    assert odd == ids[1::2][::-1] and "Show more" not in html(client.get("/__mock__/ui?batch_id=odd"))
    assert re.findall(r'data-job-id="([^"]+)"', html(client.get("/__mock__/ui?status=SUCCESS"))) == [ids[0]]
    assert "must be PENDING, SUCCESS or FAILURE" in html(client.get("/__mock__/ui?status=BOGUS"))


def test_journal_and_webhooks_pages_filter_like_the_json_endpoints(client):
    job = submit(client, webhook="http://127.0.0.1:9/hook")
    client.get(f"/sd3_5/v1/status/{job}", headers=KEY)
    client.get("/sd3_5/v1/status/unknown", headers=KEY)
    page = html(client.get("/__mock__/ui/journal?kind=status&status=404"))
    assert page.count('<details id="j') == 1 and "/sd3_5/v1/status/unknown" in page
    assert client.get("/__mock__/ui/journal?kind=&status=404").headers["Location"] == "?status=404"
    assert "must be an HTTP status code" in html(client.get("/__mock__/ui/journal?status=abc"))
    assert "is not a journal filter" in html(client.get("/__mock__/ui/journal?bogus=1"))
    client.post(f"/__mock__/jobs/{job}/complete")
    client.get(f"/__mock__/webhooks?job_id={job}&wait=30")  # returns once settled: the limit is for a loaded machine
    hooks = html(client.get("/__mock__/ui/webhooks"))
    assert "http://127.0.0.1:9/hook" in hooks and job[:8] in hooks
    job_page = html(client.get(f"/__mock__/ui/job/{job}"))
    assert "http://127.0.0.1:9/hook" in job_page and f"/sd3_5/v1/status/{job}" in job_page


def test_complete_and_fail_through_the_endpoints_the_page_uses(client):
    first, second = submit(client), submit(client)
    actions = dict(re.findall(r'data-url="([^"]+)" data-method="POST"[^>]*data-done="Job (completed|failed)"',
                              html(client.get(f"/__mock__/ui/job/{first}"))))
    assert set(actions.values()) == {"completed", "failed"}
    complete = next(u for u, what in actions.items() if what == "completed")
    assert client.post(unescape(complete), json={}).status_code == 200  # as dashboard.js sends it
    assert client.get(f"/sd3_5/v1/status/{first}", headers=KEY).json["status"] == "SUCCESS"
    page = html(client.get(f"/__mock__/ui/job/{second}"))
    fail = unescape(re.search(r'data-url="([^"]+)" data-method="POST" data-body="fields" data-done="Job failed"',
                              page).group(1))
    assert client.post(fail, json={"error": "nsfw"}).status_code == 200
    assert client.get(f"/sd3_5/v1/status/{second}", headers=KEY).json == {"status": "FAILURE", "id": second,
                                                                         "error": "nsfw"}
    assert 'id="complete"' not in html(client.get(f"/__mock__/ui/job/{second}"))  # terminal: no buttons


def test_a_jobs_webhook_is_sent_again_through_the_endpoint_the_page_uses(client, sd35_webhooks):
    job = submit(client, webhook=sd35_webhooks.url)
    assert 'id="resend"' not in html(client.get(f"/__mock__/ui/job/{submit(client)}"))  # no webhook, no button
    resend = unescape(re.search(r'data-url="([^"]+)" data-method="POST" data-done="Webhook sent again"',
                                html(client.get(f"/__mock__/ui/job/{job}"))).group(1))
    assert client.post(resend, json={}).status_code == 202
    [call] = sd35_webhooks.expect(1)
    assert call.json == {"status": "PENDING", "id": job}


def test_an_unknown_job_is_a_404_page(client):
    answer = client.get("/__mock__/ui/job/no-such-job")
    assert answer.status_code == 404 and "no job with id" in html(answer)


def test_the_controls_page_shows_faults_config_and_the_forms(client):
    client.post("/__mock__/faults", json={"type": "latency", "ms": 250, "endpoint": "status", "times": 3})
    page = html(client.get("/__mock__/ui/controls"))
    assert "latency" in page and "ms=250" in page and "3×" in page
    for url, method in (("/__mock__/faults", "POST"), ("/__mock__/faults", "DELETE"), ("/__mock__/config", "PATCH"),
                        ("/__mock__/clock/advance", "POST"), ("/__mock__/reset", "POST"), ("/__mock__/rules", "POST")):
        assert f'data-url="{url}" data-method="{method}"' in page, (url, method)
    assert 'data-confirm=' in page and 'data-rules-url="/__mock__/rules"' in page
    assert "&#34;lifecycle&#34;: &#34;manual&#34;" in page  # the current config, as text


def test_the_config_page_hides_the_control_token(make_client):
    client = make_client(control_token=TOKEN)
    page = html(client.get("/__mock__/ui/controls", headers={"X-Mock-Token": TOKEN}))
    assert TOKEN not in page and "&#34;control_token&#34;: &#34;***&#34;" in page


# -- who may see and drive it ------------------------------------------------------------------------------------

def test_a_rebound_host_or_another_sites_origin_is_refused(client):
    for headers in ({"Host": "evil.example:8080"}, {"Origin": "http://evil.example"}, {"Origin": "null"}):
        for path in ("/__mock__/ui", "/__mock__/ui/controls", "/__mock__/ui/static/dashboard.js"):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 403 and answer.json["errors"][0]["field"] in ("Host", "Origin"), headers


def test_with_a_token_a_page_without_it_is_the_token_form(make_client):
    client = make_client(control_token=TOKEN)
    answer = client.get("/__mock__/ui")
    page = html(answer)
    assert answer.status_code == 401 and 'type="password"' in page and "data-sign-in" in page
    assert "<nav" not in page and "Jobs" not in page.split("<main")[1][:40]
    assert "Content-Security-Policy" in answer.headers
    assert client.get("/__mock__/ui/static/dashboard.js").status_code == 200  # what the form needs, no data
    assert client.get("/__mock__/ui/thumb/1/x").status_code == 401
    assert client.get("/__mock__/ui/journal").status_code == 401


def test_the_token_is_exchanged_for_a_strict_httponly_cookie(make_client):
    client = make_client(control_token=TOKEN)
    assert client.post("/__mock__/ui/session", json={"token": "wrong"}).status_code == 401
    assert client.post("/__mock__/ui/session", data=f'{{"token": "{TOKEN}"}}',
                       content_type="text/plain").status_code == 415
    assert client.post("/__mock__/ui/session", json={"token": TOKEN},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    answer = client.post("/__mock__/ui/session", json={"token": TOKEN})
    assert answer.status_code == 204
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{TOKEN_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie \
        and "Path=/__mock__" in cookie


def cookie(client, value: str = TOKEN) -> dict:
    """Put the dashboard's cookie in ``client``'s jar (as the browser holds it); no extra headers."""
    client.set_cookie(TOKEN_COOKIE, value, path="/__mock__")
    return {}


def test_the_cookie_stands_in_for_the_header(make_client):
    client = make_client(control_token=TOKEN)
    job = submit(client)
    assert client.get("/__mock__/ui", headers=cookie(client)).status_code == 200
    assert client.get("/__mock__/jobs", headers=cookie(client)).json["jobs"][0]["id"] == job
    own = {"Origin": "http://localhost", **cookie(client)}   # the test client's Host is "localhost"
    assert client.post(f"/__mock__/jobs/{job}/complete", json={}, headers=own).status_code == 200
    assert client.get("/__mock__/ui", headers={"X-Mock-Token": TOKEN}).status_code == 200  # the header still works


def test_a_wrong_cookie_is_a_401_and_is_dropped(make_client):
    client = make_client(control_token=TOKEN)
    page = client.get("/__mock__/ui", headers=cookie(client, "guess"))
    assert page.status_code == 401 and "no longer valid" in html(page)
    assert f"{TOKEN_COOKIE}=;" in page.headers["Set-Cookie"]  # cleared
    answer = client.get("/__mock__/jobs", headers=cookie(client, "guess"))
    assert answer.status_code == 401 and answer.json["errors"][0] == {
        "field": TOKEN_COOKIE, "rule": "valid", "message": "is not this mock's control token"}


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:3000", None])
def test_a_change_with_the_cookie_from_another_page_is_refused(make_client, origin):
    """A cross-site page never gets the cookie (SameSite=Strict), but a page on another port of localhost is
    same-site: a bodiless POST from it needs no preflight. So a change the cookie authorises must carry the
    dashboard's own Origin; a client without a browser sends the header instead."""
    client = make_client(control_token=TOKEN)
    job = submit(client)
    headers = {**cookie(client), **({"Origin": origin} if origin else {})}
    for method, path, body in (("POST", "/__mock__/reset", None), ("POST", f"/__mock__/jobs/{job}/complete", None),
                               ("POST", f"/__mock__/jobs/{job}/fail", {"error": "x"}),
                               ("PATCH", "/__mock__/config", {"lifecycle": "immediate"})):
        answer = client.open(path, method=method, json=body, headers=headers)
        assert answer.status_code == 403 and answer.json["errors"][0]["field"] == "Origin", (method, path)
    assert client.get(f"/__mock__/jobs/{job}", headers={"X-Mock-Token": TOKEN}).json["status"] == "PENDING"
    assert client.get("/__mock__/config", headers={"X-Mock-Token": TOKEN}).json["lifecycle"] == "manual"


def test_with_a_token_the_dashboard_works_under_any_host_name(make_client):
    """A mock in a container, reached as http://mock:8080 with a token: its own page's Origin is that name."""
    client = make_client(control_token=TOKEN)
    job = submit(client)
    own = {"Host": "mock:8080", "Origin": "http://mock:8080", **cookie(client)}
    client.set_cookie(TOKEN_COOKIE, TOKEN, domain="mock", path="/__mock__")
    assert client.get("/__mock__/ui", headers={"Host": "mock:8080"}).status_code == 200
    assert client.post(f"/__mock__/jobs/{job}/complete", json={}, headers=own).status_code == 200
    other = {"Host": "mock:8080", "Origin": "http://other:8080"}
    assert client.post("/__mock__/reset", json={}, headers=other).status_code == 403
    assert make_client().get("/__mock__/ui", headers={"Host": "mock:8080", "Origin": "http://mock:8080"}) \
        .status_code == 403  # without a token, a name that is not the mock's stays a rebound one


def test_no_control_plane_no_dashboard(make_client):
    client = make_client(control_plane=False)
    for path in ("/__mock__/ui", "/__mock__/ui/", "/__mock__/ui/controls", "/__mock__/ui/static/dashboard.js"):
        assert client.get(path).status_code == 404


def test_over_real_http_the_cookie_flow_works_and_another_origin_is_refused():
    with serve(MockConfig(lifecycle="manual", control_token=TOKEN)) as mock:
        http = requests.Session()
        assert http.get(f"{mock.url}/__mock__/ui", timeout=10).status_code == 401
        own = {"Origin": mock.url}
        assert http.post(f"{mock.url}/__mock__/ui/session", json={"token": TOKEN}, headers=own,
                         timeout=10).status_code == 204
        assert http.cookies.get(TOKEN_COOKIE) == TOKEN
        job = requests.post(f"{mock.url}/sd3_5/v1", json=request_body(), headers=KEY, timeout=10).json()["id"]
        page = http.get(f"{mock.url}/__mock__/ui", timeout=10)
        assert page.status_code == 200 and job in page.text
        assert http.get(f"{mock.url}/__mock__/ui/static/dashboard.css", timeout=10).status_code == 200
        other = {"Origin": "http://localhost:1", "Content-Type": "application/json"}
        assert http.post(f"{mock.url}/__mock__/reset", data="{}", headers=other, timeout=10).status_code == 403
        assert http.post(f"{mock.url}/__mock__/jobs/{job}/fail", json={"error": "from the page"}, headers=own,
                         timeout=10).status_code == 200
        assert requests.get(f"{mock.url}/sd3_5/v1/status/{job}", headers=KEY, timeout=10).json()["error"] == \
            "from the page"
        assert http.delete(f"{mock.url}/__mock__/ui/session", json={}, headers=own, timeout=10).status_code == 204
        assert http.get(f"{mock.url}/__mock__/ui", timeout=10).status_code == 401
