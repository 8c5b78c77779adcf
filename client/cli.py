"""Command line: ``sd35-client generate "prompt" ... --out DIR`` and ``sd35-client status ID``.

The key comes from $IMAGEPIPELINE_API_KEY (or ``--api-key``), the target from
$IMAGEPIPELINE_BASE_URL (or ``--base-url``), so the same command runs against the mock or the live
API. Progress goes to stderr (one live line on a terminal), results to stdout (the saved paths,
one a line, or JSON with ``--json``), so the output can be piped.

Exit codes (distinct, for scripts):
    0  done (``status``: the job is PENDING or SUCCESS)
    1  any other error (server error, connection, unexpected answer, rate limited)
    2  invalid input (bad arguments, or the request was refused as invalid)
    3  authentication failed (missing or refused API key)
    4  the job failed
    5  timed out (the job did not finish within --wait-timeout, or no answer in time)
    6  unknown job id
    7  the job is done but its images could not be saved (the job id and the command that saves
       them are printed); a folder that cannot take them is refused before anything is sent (2)
    130  interrupted (the job id is printed, to resume with ``status ID --wait``)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from . import errors
from .api import API_KEY_ENV, BASE_URL_ENV, ImagePipelineClient
from .models import GenerationRequest, JobStatus

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INVALID = 2
EXIT_AUTH = 3
EXIT_JOB_FAILED = 4
EXIT_TIMEOUT = 5
EXIT_NOT_FOUND = 6
EXIT_SAVE_FAILED = 7
EXIT_NO_CREDITS = 8
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--base-url", help=f"API base URL (default ${BASE_URL_ENV}, else the live API)")
    common.add_argument("--api-key", help=f"API key (prefer ${API_KEY_ENV}: arguments are visible to other users)")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    common.add_argument("--wait-timeout", type=float, default=600.0, metavar="S",
                        help="give up waiting for the job after S seconds (default 600)")

    parser = argparse.ArgumentParser(
        prog="sd35-client",
        description="Generate images with ImagePipeline Stable Diffusion 3.5 (or its offline mock).",
        epilog="exit codes: 0 ok, 1 error, 2 invalid input, 3 auth failed, 4 job failed, "
               "5 timed out, 6 unknown job, 7 images not saved, 8 no credits, 130 interrupted",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", parents=[common], help="submit a job, wait, save the images")
    gen.add_argument("prompt")
    gen.add_argument("--negative-prompt", default="")
    gen.add_argument("--steps", "--num-inference-steps", dest="num_inference_steps", type=int, default=4)
    gen.add_argument("--samples", type=int, default=1)
    gen.add_argument("--guidance-scale", type=float, default=0.0)
    gen.add_argument("--width", type=int, default=1024)
    gen.add_argument("--height", type=int, default=1024)
    gen.add_argument("--webhook")
    gen.add_argument("--direct-link", action="store_true", default=None)
    gen.add_argument("--batch-id")
    gen.add_argument("--file-prefix")
    gen.add_argument("--queued-image-urls", action="store_true", default=None)
    gen.add_argument("--out", default=".", metavar="DIR", help="where to save the images (default .)")
    gen.add_argument("--no-download", action="store_true", help="print the URLs, save nothing")

    st = sub.add_parser("status", parents=[common], help="show a job's status")
    st.add_argument("job_id", metavar="ID")
    st.add_argument("--wait", action="store_true", help="wait until the job is done")
    st.add_argument("--out", metavar="DIR", help="save the images of a SUCCESS job here")
    return parser


class Progress:
    """The live progress line on stderr: rewritten in place on a terminal, one line per change
    otherwise (so logs stay short)."""

    def __init__(self, stream: TextIO, *, quiet: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.quiet = quiet
        self.clock = clock
        self.start = clock()
        self.polls = 0
        self.last_state: str | None = None
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.open_line = False
        #: the job being followed, for the resume hint after Ctrl-C
        self.job_id: str | None = None

    def __call__(self, status: JobStatus) -> None:
        self.polls += 1
        if self.quiet:
            return
        line = (f"job {status.id}: {status.status.value} "
                f"({self.clock() - self.start:.1f} s, poll {self.polls})")
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            self.open_line = True
        elif status.status.value != self.last_state:
            self.stream.write(line + "\n")
        self.last_state = status.status.value
        self.stream.flush()

    def end(self) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False


def main(
    argv: Sequence[str] | None = None,
    *,
    make_client: Callable[..., ImagePipelineClient] = ImagePipelineClient,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line; returns the exit code (``make_client`` is the test seam)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)

    dest = _out_dir(args)
    problem = None if dest is None else _unusable_folder(dest)
    if problem:
        print(f"error: --out {dest}: {problem}; nothing was sent", file=err)
        return EXIT_INVALID
    progress = Progress(err, quiet=args.quiet)
    job_id: str | None = None
    try:
        client = make_client(api_key=args.api_key, base_url=args.base_url,
                             wait_timeout=args.wait_timeout)
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_INVALID
    try:
        with client:
            if args.command == "generate":
                return _generate(client, args, progress, out, err)
            job_id = args.job_id
            return _status(client, args, progress, out, err)
    except KeyboardInterrupt:
        progress.end()
        job_id = job_id or progress.job_id
        print("interrupted", file=err)
        if job_id:
            print(f"job {job_id} may still finish; resume with: {_resume_command(args, job_id)}", file=err)
        return EXIT_INTERRUPTED
    except errors.ImagePipelineError as exc:
        progress.end()
        return _report(exc, err, args)


def _out_dir(args: argparse.Namespace) -> str | None:
    """The folder the images will be saved in, or None when nothing is saved."""
    return None if getattr(args, "no_download", False) else args.out


def _unusable_folder(path: str) -> str | None:
    """Why the images could not be saved in ``path``, or None if they can.

    Checked before anything is sent: after the submit, a failed save loses an image that was paid
    for. The folder is created and a probe file written in it, the one check that holds whatever
    the cause (a file in the way, permissions, a read-only disk, running as root).
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        return "is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"cannot save there ({exc.strerror or exc})"
    return None


def _resume_command(args: argparse.Namespace, job_id: str) -> str:
    """The command that picks the job up by its id (instead of paying for a new one), as typed."""
    words = ["sd35-client", "status", job_id, "--wait"]
    if args.base_url:
        words += ["--base-url", args.base_url]
    dest = _out_dir(args)
    if dest is not None:
        words += ["--out", dest]
    return shlex.join(words)


def _generate(client: ImagePipelineClient, args: argparse.Namespace, progress: Progress,
              out: TextIO, err: TextIO) -> int:
    request = GenerationRequest(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        num_inference_steps=args.num_inference_steps,
        samples=args.samples,
        guidance_scale=args.guidance_scale,
        width=args.width,
        height=args.height,
        webhook=args.webhook,
        direct_link=args.direct_link,
        batch_id=args.batch_id,
        file_prefix=args.file_prefix,
        queued_image_urls=args.queued_image_urls,
    )
    first = client.submit(request)
    progress.job_id = first.id
    progress(first)
    try:
        done = client.wait(first, on_update=progress) if not first.is_failure else first
    except errors.ImagePipelineError as exc:
        if exc.job_id is None:
            exc.job_id = first.id
        raise
    progress.end()
    if done.is_failure:
        raise errors.JobFailedError(done.id, done.error or "", done)
    return _emit(client, done, args, out, err)


def _status(client: ImagePipelineClient, args: argparse.Namespace, progress: Progress,
            out: TextIO, err: TextIO) -> int:
    if args.wait:
        current = client.wait(args.job_id, on_update=progress)
        progress.end()
    else:
        current = client.status(args.job_id)
        if current.is_failure:
            raise errors.JobFailedError(current.id, current.error or "", current)
    if current.is_pending:
        if args.json:
            out.write(json.dumps(_as_dict(current, None)) + "\n")
        else:
            out.write(f"{current.status.value} {current.id}\n")
        return EXIT_OK
    return _emit(client, current, args, out, err)


def _emit(client: ImagePipelineClient, done: JobStatus, args: argparse.Namespace, out: TextIO,
          err: TextIO) -> int:
    dest = _out_dir(args)
    try:
        files = [str(p) for p in client.download(done, dest)] if dest is not None else None
    except OSError as exc:  # the folder passed the check before any request: the disk filled up, or it changed
        print(f"error: job {done.id} is done but its images could not be saved in {dest}: {exc}", file=err)
        print(f"save them with: {_resume_command(args, done.id)}", file=err)
        return EXIT_SAVE_FAILED
    if args.json:
        out.write(json.dumps(_as_dict(done, files)) + "\n")
    else:
        for line in files if files is not None else done.download_urls:
            out.write(line + "\n")
    out.flush()
    return EXIT_OK


def _as_dict(status: JobStatus, files: list[str] | None) -> dict[str, Any]:
    data: dict[str, Any] = {"status": status.status.value, "id": status.id}
    if status.download_urls:
        data["download_urls"] = list(status.download_urls)
    if status.batch_id is not None:
        data["batch_id"] = status.batch_id
    if status.error is not None:
        data["error"] = status.error
    if files is not None:
        data["files"] = files
    return data


def _report(exc: errors.ImagePipelineError, err: TextIO, args: argparse.Namespace) -> int:
    print(f"error: {exc}", file=err)
    if isinstance(exc, errors.InvalidRequestError):
        code = EXIT_INVALID
    elif isinstance(exc, errors.CreditsExhaustedError):
        code = EXIT_NO_CREDITS
        print("hint: the API key has no credits left; top it up, then run the command again", file=err)
    elif isinstance(exc, errors.AuthenticationError):
        code = EXIT_AUTH
        if exc.status_code == 401:
            print(f"hint: set ${API_KEY_ENV} (or --api-key)", file=err)
    elif isinstance(exc, errors.JobFailedError):
        code = EXIT_JOB_FAILED
    elif isinstance(exc, (errors.WaitTimeoutError, errors.TimeoutError)):
        code = EXIT_TIMEOUT
    elif isinstance(exc, errors.NotFoundError):
        code = EXIT_NOT_FOUND
    else:
        code = EXIT_ERROR
    resumable = not isinstance(exc, (errors.JobFailedError, errors.APIError)) or isinstance(
        exc, (errors.ServerError, errors.RateLimitedError))
    if (args.command == "generate" or args.wait) and exc.job_id and resumable:
        print(f"job {exc.job_id} may still finish; resume with: {_resume_command(args, exc.job_id)}", file=err)
    return code
