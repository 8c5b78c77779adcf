"""Contracts of the optional fields, read from the shared options job (two samples, direct_link,
file_prefix, batch_id, queued_image_urls and a webhook, created once per run): samples 2 (L05),
optional fields accepted (L10), one URL per sample (L13), queued_image_urls (L16), direct_link
(L17), file_prefix and batch_id (L18), images of the requested size (L27)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest

from sd35_twin.contracts.support import OPTIONS_BODY

shared_options = pytest.mark.billable(shared="options", priority=1)
shared_basic = pytest.mark.billable(shared="basic", priority=0)


def _last_segment(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


@pytest.mark.ledger("L05")
@shared_options
def test_two_samples_are_accepted(contract, options_job):
    first = options_job.first
    contract.observe("L05", {"samples": 2, "submit_http_status": options_job.submit.http_status,
                             "error": options_job.error})
    assert first is not None, f"samples=2 was refused: {options_job.error}"
    assert len(options_job.require_success().download_urls) == 2


@pytest.mark.ledger("L10")
@shared_options
def test_every_optional_field_is_accepted(contract, options_job):
    contract.observe("L10", {"sent": sorted(OPTIONS_BODY), "submit_http_status": options_job.submit.http_status})
    assert options_job.first is not None, f"the optional fields were refused: {options_job.error}"
    assert options_job.first.status.value in ("PENDING", "SUCCESS")


@pytest.mark.ledger("L13")
@shared_options
def test_one_download_url_per_sample(contract, options_job):
    urls = options_job.require_success().download_urls
    contract.observe("L13", {"samples": 2, "download_urls": len(urls)})
    assert len(urls) == 2 and len(set(urls)) == 2, urls


@pytest.mark.ledger("L16")
@shared_options
def test_queued_image_urls_come_with_pending_and_serve_once_done(contract, options_job):
    final = options_job.require_success()
    if not options_job.saw_pending:
        pytest.skip("the target answered SUCCESS at once; there was no PENDING answer to check")
    queued = options_job.first.download_urls
    contract.observe("L16", {"pending_urls": len(queued),
                             "before_done": [(s.http_status, s.content_type) for s in options_job.early_downloads]},
                     profile={"http_status": {"image_not_ready": options_job.early_downloads[0].http_status}}
                     if options_job.early_downloads else None)
    assert len(queued) == 2, f"PENDING carries {len(queued)} download_urls, not 2: {dict(options_job.first.raw)}"
    assert list(queued) == list(final.download_urls), "the queued URLs differ from the final ones"
    for step in options_job.early_downloads:
        assert step.image is None, f"{step.url} served an image before the job was done"
    assert all(d.image is not None for d in options_job.downloads), "a queued URL serves no image once done"


@pytest.mark.ledger("L17")
@shared_options
def test_direct_link_gives_friendly_png_urls(contract, options_job):
    options_job.require_success()
    for step in options_job.downloads:
        contract.observe("L17", {"url": step.url, "content_type": step.content_type,
                                 "format": step.image[0] if step.image else None})
        assert _last_segment(step.url).endswith(".png"), f"not a friendly .png URL: {step.url}"
        assert (step.content_type or "").startswith("image/png"), f"{step.url} serves {step.content_type}"
        assert step.image is not None and step.image[0] == "PNG", f"{step.url} is not a PNG: {step.image}"


@pytest.mark.ledger("L17")
@shared_basic
def test_without_direct_link_urls_are_opaque(contract, basic_job):
    final = basic_job.require_success()
    contract.observe("L17", {"urls": list(final.download_urls)})
    for url in final.download_urls:
        assert not _last_segment(url).endswith(".png"), f"a URL without direct_link is a friendly .png: {url}"
        assert basic_job.first.id not in url, f"a URL without direct_link names the job: {url}"


@pytest.mark.ledger("L18")
@shared_options
def test_file_prefix_starts_the_image_file_names(contract, options_job):
    final = options_job.require_success()
    names = [_last_segment(u) for u in final.download_urls]
    contract.observe("L18", {"file_names": names})
    assert all(name.startswith(OPTIONS_BODY["file_prefix"]) for name in names), (
        f"file_prefix {OPTIONS_BODY['file_prefix']!r} is not in the file names {names}")


@pytest.mark.ledger("L18")
@shared_options
def test_batch_id_is_echoed(contract, options_job):
    options_job.require_final()
    bodies = [dict(status.raw) for _, status in options_job.answers]
    missing = [b for b in bodies if b.get("batch_id") != OPTIONS_BODY["batch_id"]]
    contract.observe("L18", {"batch_id_echoed": not missing, "example_body": bodies[-1]},
                     profile={"echo_batch_id": not missing})
    assert not missing, f"batch_id is not echoed back: {missing[0]}"


@pytest.mark.ledger("L27")
@shared_options
def test_each_sample_is_an_image_of_the_requested_size(contract, options_job):
    final = options_job.require_success()
    sizes = [d.image[1] if d.image else None for d in options_job.downloads]
    contract.observe("L27", {"image_sizes": sizes})
    assert len(sizes) == len(final.download_urls) == 2
    assert all(size == (1024, 1024) for size in sizes), f"images are {sizes}, not 1024x1024"
