"""The client under the mock's download body faults: a cut-off, reset or mis-sized image is retried or
reported, and never left on disk looking complete."""

from __future__ import annotations

import pytest
from PIL import Image

from sd35_twin.client import ConnectionLostError, RetryPolicy, UnexpectedResponseError

pytestmark = pytest.mark.mock_only

REQ = dict(prompt="a red fox in snow", negative_prompt="blurry", samples=1, width=256, height=256)

BROKEN = [
    ({"type": "truncate"}, ConnectionLostError),
    ({"type": "truncate", "bytes": 0}, ConnectionLostError),
    ({"type": "reset", "bytes": 100}, ConnectionLostError),
    ({"type": "wrong_length", "length": "long"}, ConnectionLostError),
    ({"type": "wrong_length"}, UnexpectedResponseError),  # well framed: only the image's end marker tells
]


def _downloads(ctl) -> int:
    return len(ctl.requests(kind="download"))


@pytest.mark.parametrize("direct_link", [False, True], ids=["jpeg", "png"])
@pytest.mark.parametrize("fault,_", BROKEN, ids=[f"{f['type']}-{i}" for i, (f, _) in enumerate(BROKEN)])
def test_a_broken_download_is_retried_and_saved_whole(mock, tmp_path, fault, _, direct_link):
    api = mock.client()
    done = api.generate(**REQ, direct_link=direct_link)
    mock.control.fault(endpoint="download", **fault)
    [path] = api.download(done, tmp_path)
    with Image.open(path) as img:
        img.load()  # every byte is there
        assert img.size == (256, 256)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert _downloads(mock.control) == 2
    mock.control.assert_submits(1)  # a broken image is fetched again, never generated again


@pytest.mark.parametrize("direct_link", [False, True], ids=["jpeg", "png"])
@pytest.mark.parametrize("fault,error", BROKEN, ids=[f"{f['type']}-{i}" for i, (f, _) in enumerate(BROKEN)])
def test_a_download_broken_every_time_raises_and_saves_nothing(mock, tmp_path, fault, error, direct_link):
    api = mock.client()
    done = api.generate(**REQ, direct_link=direct_link)
    mock.control.fault(endpoint="download", times=50, **fault)
    with pytest.raises(error) as info:
        api.download(done, tmp_path)
    assert info.value.job_id == done.id
    assert list(tmp_path.iterdir()) == []  # no image, no .part
    assert _downloads(mock.control) == RetryPolicy().status_attempts


def test_a_trickled_download_arrives_whole(mock, tmp_path):
    api = mock.client()
    done = api.generate(**REQ)
    mock.control.fault(endpoint="download", type="trickle", bytes_per_second=1024 * 1024)
    [path] = api.download(done, tmp_path)
    with Image.open(path) as img:
        img.load()
        assert img.size == (256, 256)
    [download] = mock.control.requests(kind="download")
    assert "trickle" in download["fault"]
