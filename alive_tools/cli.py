"""The ``alive`` command.

alive run                      start the embedded stack, animate the sample photo, show the
                               result and its provenance, publish it, stop everything
alive up                       start the embedded stack and keep it running (Ctrl-C stops)
alive submit PHOTO [PROMPT]    send your own photo to a running stack; prints the result path
alive status JOB_ID            a job's state and its path through the pipeline
alive cancel JOB_ID            cancel a job that has not ended
alive token [--scope S ...]    print a development token of the running stack, for other tools
                               (the CLI mints its own; the API wants one on every call)
alive topics                   create Alive's topics on the configured Kafka (deployments)

Exit codes: 0 done (READY or PUBLISHED); 1 the job was rejected, vetoed or failed, or a
service exited uncleanly; 2 a usage error; 3 no stack is running here; 4 the photo file
cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import grpc
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from alive.blobs import LocalBlobStore
from alive.jobs import DEFAULT_PROMPT
from alive.kafka import ensure_topics
from alive.media import probe_mp4
from alive.pipeline import PIPELINE, REVIEW
from alive.provenance import verify_video
from alive.settings import ServiceSettings
from alive.v1.api_pb2 import JobView
from alive.v1.events_pb2 import JobState, OutputSpec, StatusEvent, Verdict
from alive_tools.client import AliveClient, Rejected
from alive_tools.embedded.stack import REPO_ROOT, EmbeddedStack
from alive_tools.keys import mint_token
from services.ingest.auth import CREATOR_CLAIM, CREATOR_SCOPES, Scope

console = Console(stderr=True)
WORKDIR = Path(".alive")
STATE_FILE = WORKDIR / "stack.json"
SAMPLE_PHOTO = REPO_ROOT / "samples" / "chelsea.jpg"
# The states a job passes on its way to READY, for the progress bar.
STEPS_TO_READY = PIPELINE.steps_to(JobState.READY)
STARTING = f"starting the broker, Triton and {len(PIPELINE.stages)} services…"
CLI_SUBJECT = "cli"  # the creator the CLI submits as, with a development token
NO_STACK, NO_PHOTO = 3, 4  # exit codes (2 is argparse's usage error)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="alive", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"alive {version('alive')}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="the whole pipeline once on the sample photo")
    _add_job_options(run)
    run.add_argument("--photo", type=Path, default=SAMPLE_PHOTO, help="JPEG, PNG or WebP")
    run.add_argument("--prompt", default=DEFAULT_PROMPT, help="what should move, and how")
    commands.add_parser("up", help="start the embedded stack and keep it running")
    submit = commands.add_parser("submit", help="send a photo to a running stack")
    submit.add_argument("photo", type=Path, help="JPEG, PNG or WebP")
    submit.add_argument("prompt", nargs="?", default="", help="empty: the default prompt")
    submit.add_argument("--publish", action="store_true", help="also put it on a Story")
    _add_job_options(submit)
    status = commands.add_parser("status", help="show a job")
    status.add_argument("job_id", help="as printed by submit")
    cancel = commands.add_parser("cancel", help="cancel a job that has not ended")
    cancel.add_argument("job_id", help="as printed by submit")
    token = commands.add_parser(
        "token", help="print a development token of the running stack (for grpcurl, clients)"
    )
    token.add_argument("--subject", default=CLI_SUBJECT, help="the creator it calls as")
    token.add_argument(
        "--scope",
        action="append",
        choices=[s.value for s in Scope],
        help="repeatable (default: a creator's scopes)",
    )
    token.add_argument("--creator", help="with --scope alive.service: the creator acted for")
    token.add_argument("--ttl-s", type=int, default=3600, help="lifetime in seconds")
    commands.add_parser("topics", help="create the topics on the configured Kafka")
    args = parser.parse_args(argv)
    handlers = {
        "run": _run,
        "up": _up,
        "submit": _submit,
        "status": _status,
        "cancel": _cancel,
        "token": _token,
        "topics": _topics,
    }
    sys.exit(handlers[args.command](args))


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, default=0, help="pixels (default 576)")
    parser.add_argument("--height", type=int, default=0, help="pixels (default 1024)")
    parser.add_argument("--fps", type=int, default=0, help="frames a second (default 24)")
    parser.add_argument("--duration-ms", type=int, default=0, help="length (default 4000)")
    parser.add_argument("--seed", type=int, default=None, help="same seed, same video")
    parser.add_argument("--out", type=Path, default=Path("out"), help="where the MP4 goes")


def _run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    stack = EmbeddedStack(WORKDIR)
    with console.status(STARTING):
        stack.__enter__()
    try:
        console.print(f"stack up in {time.monotonic() - started:.1f} s (logs in {stack.logs})")
        console.print(f"review queue: {stack.review_url} (accounts in {stack.reviewer_file})")
        with stack.client() as client:
            code = _submit_and_show(
                client, args, LocalBlobStore(stack.blob_root), stack.trust_anchor, publish=True
            )
    finally:
        with console.status("shutting down…"):
            codes = stack.stop()
    unclean = {name: c for name, c in codes.items() if c != 0}
    console.print("shut down cleanly" if not unclean else f"[red]unclean exits: {unclean}")
    console.print(f"total {time.monotonic() - started:.1f} s")
    return code or (1 if unclean else 0)


def _up(args: argparse.Namespace) -> int:
    stack = EmbeddedStack(WORKDIR)
    with console.status(STARTING):
        stack.__enter__()
    stack.write_state(STATE_FILE)
    console.print_json(json.dumps(stack.describe()))
    console.print('up: `alive submit PHOTO "PROMPT"` in another terminal; Ctrl-C stops')
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    with console.status("shutting down…"):
        stack.stop()
    STATE_FILE.unlink(missing_ok=True)
    return 0


def _running_stack() -> dict[str, str]:
    if not STATE_FILE.exists():
        console.print("[red]no stack is running here: start one with `alive up`")
        sys.exit(NO_STACK)
    state: dict[str, str] = json.loads(STATE_FILE.read_text())
    return state


def _client(state: dict[str, str]) -> AliveClient:
    """A client of the running stack, calling with a token the CLI mints for itself."""
    token = mint_token(Path(state["token_issuer_key"]), CLI_SUBJECT, CREATOR_SCOPES)
    return AliveClient(state["api"], token=token, tls_ca=Path(state["api_tls_ca"]).read_bytes())


def _submit(args: argparse.Namespace) -> int:
    state = _running_stack()
    with _client(state) as client:
        blobs = LocalBlobStore(Path(state["blob_root"]))
        trust_anchor = Path(state["trust_anchor"])
        return _submit_and_show(client, args, blobs, trust_anchor, publish=args.publish)


def _status(args: argparse.Namespace) -> int:
    return _show_after(lambda client: client.get(args.job_id))


def _cancel(args: argparse.Namespace) -> int:
    return _show_after(lambda client: client.cancel(args.job_id))


def _show_after(call: Callable[[AliveClient], JobView]) -> int:
    """Makes one call on the running stack and shows the job it answers with."""
    with _client(_running_stack()) as client:
        try:
            view = call(client)
        except grpc.RpcError as exc:
            console.print(f"[red]{exc.code().name}: {exc.details()}")
            return 1
    _print_path(view)
    return 0


def _token(args: argparse.Namespace) -> int:
    state = _running_stack()
    claims = {CREATOR_CLAIM: args.creator} if args.creator else {}
    scopes = args.scope or CREATOR_SCOPES
    print(
        mint_token(
            Path(state["token_issuer_key"]), args.subject, scopes, ttl_s=args.ttl_s, claims=claims
        )
    )
    return 0


def _topics(args: argparse.Namespace) -> int:
    asyncio.run(ensure_topics(ServiceSettings()))
    return 0


def _submit_and_show(
    client: AliveClient,
    args: argparse.Namespace,
    blobs: LocalBlobStore,
    trust_anchor: Path,
    *,
    publish: bool,
) -> int:
    output = OutputSpec(
        width=args.width, height=args.height, fps=args.fps, duration_ms=args.duration_ms
    )
    try:
        photo = args.photo.read_bytes()
    except OSError as exc:
        console.print(f"[red]cannot read the photo {args.photo}: {exc.strerror or exc}")
        return NO_PHOTO
    try:
        response = client.submit(photo, args.prompt, output=output, seed=args.seed)
    except Rejected as exc:
        detail = str(exc).removeprefix(f"{exc.reason_code}: ")
        console.print(f"[red]rejected: {exc.reason_code}[/] ({detail})")
        return 1
    job_id = response.job_id
    console.print(f"job {job_id}")
    view = _follow(client, job_id, stop_at_ready=True)
    if view.state != JobState.READY:
        _print_path(view)
        return 1
    video = _save_video(blobs, view, args.out)
    if publish:
        client.publish(job_id)
        view = _follow(client, job_id, stop_at_ready=False, shown=len(view.history))
        if view.state == JobState.READY:
            console.print("[yellow]held for a person: decide it in the review queue")
    _print_path(view)
    _print_video(video, trust_anchor)
    console.print(f"[bold green]video: {video}")
    print(video)
    return 0 if view.state in (JobState.READY, JobState.PUBLISHED) else 1


def _follow(client: AliveClient, job_id: str, *, stop_at_ready: bool, shown: int = 0) -> JobView:
    """Shows progress until the job ends (or is READY); returns the job then. A terminal gets
    a progress bar naming the stage at work; a log (CI) gets one line per transition, from
    the ``shown``-th on."""
    events = client.watch(job_id, stop_at_ready=stop_at_ready)
    if not console.is_terminal:
        started = time.monotonic()
        for number, event in enumerate(events):
            if number < shown:
                continue
            console.print(
                f"{time.monotonic() - started:6.1f} s  {JobState.Name(event.state)}"
                f"  ({event.stage})  {' '.join(event.reason_codes)}".rstrip()
            )
            if _held(event):
                break
        return client.get(job_id)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("waiting", total=len(STEPS_TO_READY))
        for event in events:
            if _held(event):
                break
            done = STEPS_TO_READY.index(event.state) + 1 if event.state in STEPS_TO_READY else 0
            working = PIPELINE.next_stage(event.state)
            progress.update(
                task,
                completed=done,
                description=f"{working.name}…" if working else JobState.Name(event.state).lower(),
            )
    return client.get(job_id)


def _held(event: StatusEvent) -> bool:
    """Review holds the job for a person: it stays READY until a reviewer decides."""
    return event.stage == REVIEW.name and event.verdict == Verdict.REVIEW


def _save_video(blobs: LocalBlobStore, view: JobView, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"alive-{view.job_id[:8]}.mp4"
    shutil.copyfile(blobs.local_path(view.video), target)
    return target.resolve()


def _print_path(view: JobView) -> None:
    table = Table(title=f"job {view.job_id}: {JobState.Name(view.state)}")
    for column in ("#", "stage", "state", "verdict", "time", "reasons"):
        table.add_column(column, justify="right" if column in ("#", "time") else "left")
    for i, event in enumerate(view.history, 1):
        took = event.at_ms - event.stage_started_at_ms if event.stage_started_at_ms else 0
        table.add_row(
            str(i),
            event.stage,
            JobState.Name(event.state),
            Verdict.Name(event.verdict),
            f"{took} ms",
            ", ".join(event.reason_codes),
        )
    if view.history:
        total = view.history[-1].at_ms - view.history[0].stage_started_at_ms
        table.caption = f"{total} ms from submission to {JobState.Name(view.state)}"
    console.print(table)


def _print_video(video: Path, trust_anchor: Path) -> None:
    info = probe_mp4(video)
    console.print(
        f"video: {info.width}x{info.height}, {info.frame_count} frames at {info.fps:g} fps, "
        f"{info.duration_s:.2f} s, {info.video_codec}; audio: {info.audio_codec} "
        f"{info.audio_duration_s or 0:.2f} s; {video.stat().st_size / 1024:.0f} KiB"
    )
    check = verify_video(video, trust_anchor.read_bytes())
    colour = "green" if check.trusted else "red"
    console.print(
        f"provenance: C2PA [{colour}]{check.state}[/] against {trust_anchor}; "
        f"AI-generated: {check.ai_generated} ({check.digital_source_type}); "
        f"generator: {check.generator}; ingredients: {', '.join(check.ingredient_relationships)}"
    )


__all__ = ["main"]
