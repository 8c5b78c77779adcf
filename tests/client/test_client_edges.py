"""The client's arguments and names, stated exactly: what generate() passes on, wait() with a plain number,
how download() names files (fallbacks, clashes, dotfiles) and tells an image by its bytes. Written against the
survivors of a mutation run (docs/mutation.md)."""

from __future__ import annotations

import json

import pytest
import responses

from sd35_twin import client
from sd35_twin.client import InvalidRequestError, JobFailedError, UnexpectedResponseError, WaitTimeoutError

BASE = "https://api.test"
SUBMIT = BASE + "/sd3_5/v1"
STATUS = BASE + "/sd3_5/v1/status/job1"
PENDING = {"status": "PENDING", "id": "job1"}
PNG = b"\x89PNG\r\n\x1a\nbody\x00\x00\x00\x00IEND\xaeB`\x82"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8 \x0e\x00\x00\x00body"


# --- generate() and wait(): the arguments they pass on ------------------------------------------------

def test_generate_waits_for_its_own_timeout_not_the_clients(make_client, rsps, clock):
    api = make_client(wait_timeout=600)
    rsps.add(responses.POST, SUBMIT, json=PENDING)
    rsps.add(responses.GET, STATUS, json=PENDING)
    start = clock.now
    with pytest.raises(WaitTimeoutError) as info:
        api.generate(prompt="x", timeout=7)
    assert (info.value.timeout, info.value.job_id, clock.now - start) == (7, "job1", 7)


def test_generate_passes_validate_on_both_ways(make_client, rsps):
    rsps.add(responses.POST, SUBMIT, json={"status": "SUCCESS", "id": "job1", "download_urls": ["u"]})
    assert make_client().generate(prompt="x", samples="3", validate=False).is_success
    assert json.loads(rsps.calls[0].request.body)["samples"] == "3"
    with pytest.raises(InvalidRequestError) as info:
        make_client(validate=False).generate(prompt="x", samples="3", validate=True)
    assert info.value.client_side and len(rsps.calls) == 1


def test_generate_shows_every_status_and_raises_a_failure_from_the_submit(api, rsps):
    rsps.add(responses.POST, SUBMIT, json={"status": "FAILURE", "id": "job1", "error": "nsfw"})
    seen = []
    with pytest.raises(JobFailedError) as info:
        api.generate(prompt="x", on_update=seen.append)
    assert [s.status.value for s in seen] == ["FAILURE"] and info.value.job_id == "job1"
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("timeout", [3, 3.0, 2.5])
def test_wait_takes_a_plain_number_of_seconds(api, rsps, clock, timeout):
    rsps.add(responses.GET, STATUS, json=PENDING)
    start = clock.now
    with pytest.raises(WaitTimeoutError) as info:
        api.wait("job1", timeout)
    assert info.value.timeout == timeout and clock.now - start == timeout
    assert isinstance(info.value.timeout, float)


def test_wait_without_a_timeout_takes_the_clients(make_client, rsps, clock):
    rsps.add(responses.GET, STATUS, json=PENDING)
    start = clock.now
    with pytest.raises(WaitTimeoutError) as info:
        make_client(wait_timeout=12).wait(client.JobStatus.from_body(PENDING))
    assert info.value.timeout == 12 and clock.now - start == 12


@pytest.mark.parametrize("job", ["", client.JobStatus.from_body({"status": "PENDING", "id": ""})])
def test_wait_needs_a_job_id(api, rsps, job):
    with pytest.raises(ValueError, match="needs a job id"):
        api.wait(job)
    assert len(rsps.calls) == 0


# --- download(): names -----------------------------------------------------------------------------------

def done(*urls: str, job_id: str = "job1") -> client.JobStatus:
    return client.JobStatus.from_body({"status": "SUCCESS", "id": job_id, "download_urls": list(urls)})


def serve(rsps, *paths: str, body: bytes = PNG) -> list[str]:
    urls = [BASE + p for p in paths]
    for url in urls:
        rsps.add(responses.GET, url, body=body, content_type="image/png")
    return urls


def test_a_url_without_a_name_falls_back_to_the_job_id_and_its_place(api, rsps, tmp_path):
    urls = serve(rsps, "/files/", "/files/?x=1")
    assert [p.name for p in api.download(done(*urls), tmp_path)] == ["job1-1.png", "job1-2.png"]


def test_without_a_job_the_fallback_is_image_n(api, rsps, tmp_path):
    urls = serve(rsps, "/a/", "/b/")
    assert [p.name for p in api.download(urls, tmp_path / "n")] == ["image-1.png", "image-2.png"]
    assert [p.name for p in api.download(done(*urls, job_id=".."), tmp_path / "d")] == ["image-1.png", "image-2.png"]
    assert [p.name for p in api.download(done(*urls, job_id="a/b c"), tmp_path / "u")] == ["a_b_c-1.png",
                                                                                          "a_b_c-2.png"]


def test_clashing_names_never_overwrite_an_earlier_file(api, rsps, tmp_path):
    urls = [BASE + p for p in ("/a/image-3", "/b/image-3_", "/c/image-3", "/d/IMAGE-3")]
    bodies = [PNG[:8] + bytes([n]) + PNG[8:] for n in range(len(urls))]  # each its own image
    for url, body in zip(urls, bodies):
        rsps.add(responses.GET, url, body=body, content_type="image/png")
    paths = api.download(urls, tmp_path)
    assert [p.name for p in paths] == ["image-3.png", "image-3_.png", "image-3__.png", "image-4.png"]
    assert [p.read_bytes() for p in paths] == bodies and len(list(tmp_path.iterdir())) == 4


def test_a_dotfile_name_is_saved_visible_and_unsafe_characters_replaced(api, rsps, tmp_path):
    urls = serve(rsps, "/files/.hidden.png", "/files/..x.png", "/files/a%20b c.jpeg", "/files/tok?sig=1")
    names = [p.name for p in api.download(urls, tmp_path)]
    assert names == ["hidden.png", "x.png", "a_20b_c.png", "tok.png"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # nor any .part left behind


def test_a_long_name_is_cut_to_120_characters(api, rsps, tmp_path):
    [url] = serve(rsps, "/files/" + "n" * 300 + ".png")
    assert [p.name for p in api.download([url], tmp_path)] == ["n" * 120 + ".png"]


# --- download(): what an image is, by its bytes, then its Content-Type ------------------------------------

@pytest.mark.parametrize("body,ctype,ext", [
    (WEBP, "application/octet-stream", ".webp"),
    (WEBP, "image/png", ".webp"),
    (b"RIFF\x1a\x00\x00\x00WAVEfmt ", "image/png", ".png"),          # RIFF, but not WebP
    (b"WEBP\x1a\x00\x00\x00RIFFVP8 ", "image/jpeg", ".jpg"),          # the marks in the wrong places
    (b"GIF87a....", "application/octet-stream", ".gif"),
    (b"GIF89a....", "text/plain", ".gif"),
    (b"????", "IMAGE/PNG; charset=binary", ".png"),
    (b"????", "image/jpg", ".jpg"),
    (b"????", "image/avif", ".avif"),
    (b"????", "image/svg+xml", ".svg"),
    (b"????", "image/x-made-up-kind", ".x-made-up-"),
])
def test_an_image_is_named_by_its_bytes_else_its_content_type(api, rsps, tmp_path, body, ctype, ext):
    rsps.add(responses.GET, BASE + "/files/f", body=body, content_type=ctype)
    [path] = api.download([BASE + "/files/f"], tmp_path)
    assert (path.name, path.read_bytes()) == ("f" + ext, body)


@pytest.mark.parametrize("ctype,said", [("text/html; charset=utf-8", "text/html"), ("", "no content type")])
def test_a_download_that_is_not_an_image_says_what_it_was(api, rsps, tmp_path, ctype, said):
    rsps.add(responses.GET, BASE + "/files/x?sig=secret", body=b"<html>", content_type=ctype or None)
    with pytest.raises(UnexpectedResponseError) as info:
        api.download(done(BASE + "/files/x?sig=secret"), tmp_path)
    assert str(info.value).startswith(f"download {BASE}/files/x answered {said}, not an image")
    assert info.value.job_id == "job1" and info.value.status_code == 200 and list(tmp_path.iterdir()) == []
