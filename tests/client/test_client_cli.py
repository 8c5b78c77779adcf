"""The command line: output, progress line and exit codes (with `responses`, then on the real mock)."""

from __future__ import annotations

import errno
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import responses

from sd35_twin.client import ImagePipelineClient
from sd35_twin.client import cli

BASE = "https://api.test"
SUBMIT = BASE + "/sd3_5/v1"
STATUS = BASE + "/sd3_5/v1/status/job1"
ROOT = Path(__file__).resolve().parents[2]


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(argv, clock, stderr=None, **client_kwargs):
    """main() with a client on the fake clock; returns (code, stdout, stderr)."""
    out, err = io.StringIO(), stderr or io.StringIO()

    def make_client(**kwargs):
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        kwargs.setdefault("base_url", BASE)
        kwargs.setdefault("api_key", "test-key")
        return ImagePipelineClient(sleep=clock.sleep, clock=clock.monotonic, random=lambda: 0.0,
                                   **client_kwargs, **kwargs)

    code = cli.main(argv, make_client=make_client, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_generate_saves_the_images_and_prints_their_paths(rsps, clock, tmp_path):
    rsps.add(responses.POST, SUBMIT, json={"status": "PENDING", "id": "job1"})
    rsps.add(responses.GET, STATUS, json={"status": "PENDING", "id": "job1"})
    rsps.add(responses.GET, STATUS, json={"status": "SUCCESS", "id": "job1",
                                          "download_urls": [BASE + "/files/t1", BASE + "/files/t2"]})
    rsps.add(responses.GET, BASE + "/files/t1", body=b"1", content_type="image/jpeg")
    rsps.add(responses.GET, BASE + "/files/t2", body=b"2", content_type="image/jpeg")
    code, out, err = run(["generate", "a cat", "--negative-prompt", "dog", "--samples", "2",
                          "--width", "512", "--height", "512", "--out", str(tmp_path)], clock)
    assert code == cli.EXIT_OK
    assert out.splitlines() == [str(tmp_path / "t1.jpg"), str(tmp_path / "t2.jpg")]
    assert "job job1: PENDING" in err and "job job1: SUCCESS" in err
    assert err.count("PENDING") == 1  # not a TTY: one line per change, not per poll
    sent = json.loads(rsps.calls[0].request.body)
    assert sent["prompt"] == "a cat" and sent["negative_prompt"] == "dog" and sent["samples"] == 2


def test_progress_is_one_live_line_on_a_terminal(rsps, clock, tmp_path):
    rsps.add(responses.POST, SUBMIT, json={"status": "PENDING", "id": "job1"})
    rsps.add(responses.GET, STATUS, json={"status": "PENDING", "id": "job1"})
    rsps.add(responses.GET, STATUS, json={"status": "PENDING", "id": "job1"})
    rsps.add(responses.GET, STATUS, json={"status": "SUCCESS", "download_urls": [BASE + "/f/x"]})
    code, out, err = run(["generate", "x", "--no-download"], clock, stderr=TTY())
    assert code == 0 and out == BASE + "/f/x\n"
    assert err.count("\r") == 4 and "poll 4" in err and err.endswith("\n")


def test_json_output(rsps, clock, tmp_path):
    rsps.add(responses.POST, SUBMIT, json={"status": "SUCCESS", "id": "job1", "batch_id": "b",
                                           "download_urls": [BASE + "/images/p-job1-1.png"]})
    rsps.add(responses.GET, BASE + "/images/p-job1-1.png", body=b"png", content_type="image/png")
    code, out, _ = run(["generate", "x", "--json", "--batch-id", "b", "--direct-link", "--out", str(tmp_path)], clock)
    data = json.loads(out)
    assert code == 0 and data["status"] == "SUCCESS" and data["batch_id"] == "b"
    assert data["files"] == [str(tmp_path / "p-job1-1.png")]
    assert json.loads(rsps.calls[0].request.body)["direct_link"] is True


@pytest.mark.parametrize("argv", [["generate", "x", "--width", "1000.5"], ["generate", "x", "--guidance-scale", "nan"],
                                  ["generate"], ["frobnicate"], ["status", ".."]])
def test_invalid_input_exits_2_without_a_request(rsps, clock, argv):
    code, _, err = run(argv, clock)
    assert code == cli.EXIT_INVALID and len(rsps.calls) == 0
    assert err


def test_a_request_refused_by_the_server_exits_2_naming_the_field(rsps, clock):
    rsps.add(responses.POST, SUBMIT, status=400, json={"status": "FAILURE", "error": "samples: must be at most 2"})
    code, _, err = run(["generate", "x", "--samples", "3"], clock)
    assert code == cli.EXIT_INVALID and "samples" in err and len(rsps.calls) == 1


def test_auth_failure_exits_3(rsps, clock):
    rsps.add(responses.POST, SUBMIT, status=401, json={"status": "FAILURE", "error": "API-Key: missing"})
    code, _, err = run(["generate", "x"], clock)
    assert code == cli.EXIT_AUTH and "IMAGEPIPELINE_API_KEY" in err


def test_job_failure_exits_4(rsps, clock):
    rsps.add(responses.POST, SUBMIT, json={"status": "PENDING", "id": "job1"})
    rsps.add(responses.GET, STATUS, json={"status": "FAILURE", "id": "job1", "error": "NSFW"})
    code, out, err = run(["generate", "x"], clock)
    assert code == cli.EXIT_JOB_FAILED and "NSFW" in err and out == ""


def test_timeout_exits_5_and_says_how_to_resume(rsps, clock):
    rsps.add(responses.POST, SUBMIT, json={"status": "PENDING", "id": "job1"})
    rsps.add(responses.GET, STATUS, json={"status": "PENDING", "id": "job1"})
    code, _, err = run(["generate", "x", "--wait-timeout", "30"], clock)
    assert code == cli.EXIT_TIMEOUT and "status job1 --wait" in err


def test_status_commands(rsps, clock, tmp_path):
    rsps.add(responses.GET, STATUS, json={"status": "PENDING", "id": "job1"})
    assert run(["status", "job1"], clock)[:2] == (0, "PENDING job1\n")
    rsps.replace(responses.GET, STATUS, json={"status": "FAILURE", "id": "job1", "error": "boom"})
    assert run(["status", "job1"], clock)[0] == cli.EXIT_JOB_FAILED
    rsps.add(responses.GET, BASE + "/sd3_5/v1/status/nope", status=404, json={"status": "FAILURE", "error": "id: unknown"})
    assert run(["status", "nope"], clock)[0] == cli.EXIT_NOT_FOUND
    rsps.replace(responses.GET, STATUS, json={"status": "SUCCESS", "id": "job1", "download_urls": [BASE + "/f/a"]})
    rsps.add(responses.GET, BASE + "/f/a", body=b"a", content_type="image/png")
    code, out, _ = run(["status", "job1", "--wait", "--out", str(tmp_path)], clock)
    assert code == 0 and out == str(tmp_path / "a.png") + "\n"


def test_other_errors_exit_1(rsps, clock):
    rsps.add(responses.POST, SUBMIT, status=500)
    code, _, err = run(["generate", "x"], clock)
    assert code == cli.EXIT_ERROR and "500" in err and len(rsps.calls) == 1


def test_exit_codes_are_distinct():
    codes = [cli.EXIT_OK, cli.EXIT_ERROR, cli.EXIT_INVALID, cli.EXIT_AUTH, cli.EXIT_JOB_FAILED,
             cli.EXIT_TIMEOUT, cli.EXIT_NOT_FOUND, cli.EXIT_SAVE_FAILED, cli.EXIT_INTERRUPTED]
    assert len(set(codes)) == len(codes)


# --- --out: checked before anything is sent; a save that fails later keeps the job ---------------------

@pytest.mark.parametrize("command", [["generate", "x"], ["status", "job1", "--wait"]], ids=["generate", "status"])
@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_out_folder_that_cannot_take_the_images_is_refused_before_any_request(rsps, clock, tmp_path,
                                                                                  command, where):
    """On the live API a job is paid for: a folder the images cannot go to is found out first."""
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    dest = a_file if where == "a file" else a_file / "images"
    code, out, err = run([*command, "--out", str(dest)], clock)
    assert code == cli.EXIT_INVALID and len(rsps.calls) == 0 and out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: --out {dest}: ") and err.rstrip().endswith("nothing was sent"), err


def test_a_save_failing_after_the_submit_prints_the_job_id_and_the_command_that_saves_it(rsps, clock, tmp_path,
                                                                                         monkeypatch):
    rsps.add(responses.POST, SUBMIT, json={"status": "PENDING", "id": "job1"})
    rsps.add(responses.GET, STATUS, json={"status": "SUCCESS", "id": "job1", "download_urls": [BASE + "/f/a"]})
    rsps.add(responses.GET, BASE + "/f/a", body=b"a", content_type="image/png")

    def disk_full(path, data):
        path.write_text("half an image")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    dest = tmp_path / "my images"
    code, out, err = run(["generate", "x", "--base-url", BASE, "--out", str(dest)], clock)
    assert code == cli.EXIT_SAVE_FAILED and out == "" and len(rsps.calls) == 3
    assert "job job1 is done but its images could not be saved" in err and "No space left on device" in err
    resume = f"sd35-client status job1 --wait --base-url {BASE} --out '{dest}'"   # quoted: a space
    assert err.splitlines()[-1] == f"save them with: {resume}"
    assert list(dest.iterdir()) == []                   # no half-written file left taking the room


def test_status_wait_whose_folder_was_replaced_by_a_file_says_how_to_save_again(rsps, clock, tmp_path):
    dest = tmp_path / "imgs"

    def done_and_folder_gone(request):
        dest.rmdir()
        dest.write_text("a file now")
        return 200, {}, json.dumps({"status": "SUCCESS", "id": "job1", "download_urls": [BASE + "/f/a"]})

    rsps.add_callback(responses.GET, STATUS, callback=done_and_folder_gone)
    code, out, err = run(["status", "job1", "--wait", "--out", str(dest)], clock)
    assert code == cli.EXIT_SAVE_FAILED and out == ""
    assert "job job1 is done but its images could not be saved" in err
    assert err.splitlines()[-1] == f"save them with: sd35-client status job1 --wait --out {dest}"


def test_python_dash_m_client_runs():
    done = subprocess.run([sys.executable, "-m", "sd35_twin.client", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "generate" in done.stdout and "exit codes" in done.stdout


# --- on the real mock ----------------------------------------------------------------------------

@pytest.mark.mock_only
def test_cli_end_to_end_on_the_mock(mock, tmp_path, clock):
    mock.control.configure(lifecycle="polls", pending_polls=3)

    def make_client(**kwargs):
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        return ImagePipelineClient(sleep=clock.sleep, clock=clock.monotonic, **kwargs)

    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["generate", "a harbour at night", "--samples", "2", "--width", "256", "--height", "320",
                     "--direct-link", "--file-prefix", "harbour-", "--out", str(tmp_path / "imgs"),
                     "--base-url", mock.url, "--api-key", "k"], make_client=make_client, stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    paths = [Path(p) for p in out.getvalue().splitlines()]
    assert len(paths) == 2 and all(p.exists() and p.name.startswith("harbour-") for p in paths)
    for path in paths:   # named by what the server sent, not by what the direct link is assumed to be
        assert path.suffix == (".png" if path.read_bytes().startswith(b"\x89PNG") else ".jpg")

    code = cli.main(["generate", "x", "--samples", "5", "--base-url", mock.url, "--api-key", "k"],
                    make_client=make_client, stdout=io.StringIO(), stderr=err)
    assert code == cli.EXIT_INVALID and "samples: must be at most" in err.getvalue()

    mock.control.configure(api_keys=["right"])
    code = cli.main(["status", "whatever", "--base-url", mock.url, "--api-key", "wrong"],
                    make_client=make_client, stdout=io.StringIO(), stderr=io.StringIO())
    assert code == cli.EXIT_AUTH


def test_ctrl_c_while_waiting_exits_130_with_the_job_id(rsps, clock):
    def interrupt(request):
        raise KeyboardInterrupt

    rsps.add(responses.POST, SUBMIT, json={"status": "PENDING", "id": "job1"})
    rsps.add_callback(responses.GET, STATUS, callback=interrupt)
    code, out, err = run(["generate", "x"], clock)
    assert code == cli.EXIT_INTERRUPTED and "status job1 --wait" in err and out == ""


def test_no_credits_exits_8_with_a_hint(rsps, clock):
    rsps.add(responses.POST, SUBMIT, status=402, json={"status": "FAILURE", "error": "API-Key: has no credits left"})
    code, out, err = run(["generate", "x"], clock)
    assert code == cli.EXIT_NO_CREDITS == 8 and out == ""
    assert "HTTP 402: API-Key: has no credits left" in err and "no credits left" in err.splitlines()[-1]
