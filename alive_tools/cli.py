"""alive: run Alive on this machine, send it photos, follow jobs.

alive run                      start the embedded stack, animate the sample photo, show the
                               result and its provenance, publish it, stop everything
alive up                       start the embedded stack and keep it running (Ctrl-C stops)
alive submit PHOTO [PROMPT]    send your own photo to a running stack; prints the result path
alive status JOB_ID            a job's state and its path through the pipeline
alive cancel JOB_ID            cancel a job that has not ended
alive token [--scope S ...]    print a development token of the running stack, for other tools
                               (the CLI mints its own; the API wants one on every call)
alive env [--json]             print the running stack's addresses as shell exports (the
                               settings other clients and services read), or all as JSON
alive topics                   create Alive's topics on the configured Kafka, and set the
                               configs of existing ones that differ (prints what it changed)
alive dlq list [--json]        list dead-lettered records and why (Kafka and blob store from
                               settings, as for `alive topics`; `eval $(alive env)` for a stack)
alive dlq replay SELECTION [--apply]  re-drive dead letters to the stage that gave up on
                               them (SELECTION: --job-id, --reason, --stage, or --all); a dry
                               run unless --apply
alive verify FILE... [--json]  check the C2PA provenance of videos and images (any tool's)
alive dev-chain DIR            make a development C2PA signing chain (never for production)
alive demo [--photo P] [--prompt T]  contact sheets of the embedded animator (no stack):
                               a PNG per photo under out/, a row of frames per prompt

Exit codes: 0 done (READY or PUBLISHED); 1 the job was rejected, vetoed or failed, or a
service exited uncleanly; 2 a usage error; 3 no stack is running here; 4 the photo file
cannot be read. alive verify: 0 every file Trusted; 1 a file Invalid or without a
manifest; 2 a file intact but its signer untrusted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from alive.blobs import BlobStore, StageLedger, open_configured_blob_store
from alive.jobs import DEFAULT_PROMPT
from alive.kafka import ensure_topics
from alive.media import probe_mp4
from alive.pipeline import PIPELINE, REVIEW
from alive.provenance import DEV_TRUST_ANCHOR, verify_video
from alive.settings import ServiceSettings
from alive.v1.api_pb2 import JobView
from alive.v1.events_pb2 import JobState, OutputSpec, StatusEvent, Verdict
from alive_tools import dlq
from alive_tools.client import AliveClient, Rejected
from alive_tools.contact_sheets import PROMPTS, SAMPLES, effects_line, write_sheets
from alive_tools.embedded.stack import REPO_ROOT, EmbeddedStack
from alive_tools.keys import mint_token
from alive_tools.signing_chain import ensure_dev_chain
from alive_tools.verify import read_anchors, report
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
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="one of the commands below"
    )
    run = commands.add_parser("run", help="the whole pipeline once on the sample photo")
    _add_job_options(run)
    run.add_argument("--photo", type=Path, default=SAMPLE_PHOTO, help="JPEG, PNG or WebP")
    run.add_argument("--prompt", default=DEFAULT_PROMPT, help="what should move, and how")
    up = commands.add_parser("up", help="start the embedded stack and keep it running")
    joining = up.add_argument_group(
        "one host of several (docs/scaling.md): share a broker, a blob store and the keys"
    )
    joining.add_argument("--kafka", help="the shared broker's HOST:PORT (default: start one)")
    joining.add_argument("--blob-url", help="the shared store, s3://bucket/prefix")
    joining.add_argument("--secrets", type=Path, help="the shared folder of keys and certificates")
    joining.add_argument("--api-host", default="127.0.0.1", help="where the gRPC API listens")
    joining.add_argument("--no-review-web", action="store_true", help="it runs on another host")
    up.add_argument("--workdir", type=Path, default=WORKDIR, help="logs, state, local files")
    up.add_argument(
        "--ready-timeout-s", type=float, default=90, help="how long every service may take to start"
    )
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
    env = commands.add_parser(
        "env", help="print the running stack's addresses (shell exports) for other clients"
    )
    env.add_argument("--json", action="store_true", help="everything the stack wrote, as JSON")
    commands.add_parser(
        "topics", help="create the topics on the configured Kafka, correct their configs"
    )
    _add_dlq_commands(commands)
    _add_provenance_commands(commands)

    demo = commands.add_parser("demo", help="contact sheets of the animator, under out/")
    demo.add_argument("--photo", type=Path, action="append", help="repeatable (default: samples)")
    demo.add_argument("--prompt", action="append", help="repeatable (default: a set of effects)")
    demo.add_argument("--seed", type=int, default=1, help="same seed, same frames")
    demo.add_argument("--out", type=Path, default=Path("out"), help="where the PNGs go")
    args = parser.parse_args(argv)
    handlers = {
        "run": _run,
        "up": _up,
        "submit": _submit,
        "status": _status,
        "cancel": _cancel,
        "token": _token,
        "env": _env,
        "topics": _topics,
        "dlq": _dlq,
        "verify": _verify,
        "dev-chain": _dev_chain,
        "demo": _demo,
    }
    sys.exit(handlers[args.command](args))


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, default=0, help="pixels (default 576)")
    parser.add_argument("--height", type=int, default=0, help="pixels (default 1024)")
    parser.add_argument("--fps", type=int, default=0, help="frames a second (default 24)")
    parser.add_argument("--duration-ms", type=int, default=0, help="length (default 4000)")
    parser.add_argument("--seed", type=int, default=None, help="same seed, same video")
    parser.add_argument("--out", type=Path, default=Path("out"), help="where the MP4 goes")


@contextlib.contextmanager
def _working(message: str) -> Iterator[None]:
    """A spinner with ``message`` on a terminal; in a log (CI), the message as a line (a
    spinner there prints nothing at all)."""
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        console.print(message)
        yield


def _run(args: argparse.Namespace) -> int:
    if not args.photo.is_file():  # before minutes of starting a stack for nothing
        console.print(f"[red]cannot read the photo {args.photo}: no such file")
        return NO_PHOTO
    started = time.monotonic()
    stack = EmbeddedStack(WORKDIR)
    with _working(STARTING):
        stack.__enter__()
    try:
        console.print(f"stack up in {time.monotonic() - started:.1f} s (logs in {stack.logs})")
        console.print(f"review queue: {stack.review_url} (accounts in {stack.reviewer_file})")
        with stack.client() as client:
            code = _submit_and_show(
                client, args, stack.blob_store(), stack.trust_anchor, publish=True
            )
    finally:
        with _working("shutting down…"):
            codes = stack.stop()
    unclean = {name: c for name, c in codes.items() if c != 0}
    console.print("shut down cleanly" if not unclean else f"[red]unclean exits: {unclean}")
    console.print(f"total {time.monotonic() - started:.1f} s")
    return code or (1 if unclean else 0)


def _up(args: argparse.Namespace) -> int:
    stack = EmbeddedStack(
        args.workdir,
        kafka=args.kafka,
        secrets_dir=args.secrets,
        shared_blob_url=args.blob_url,
        api_host=args.api_host,
        review_web=not args.no_review_web,
    )
    state_file = args.workdir / STATE_FILE.name
    with _working(STARTING):
        stack.start_or_stop(args.ready_timeout_s)
    stack.write_state(state_file)
    console.print_json(json.dumps(stack.describe()))
    console.print('up: `alive submit PHOTO "PROMPT"` in another terminal; Ctrl-C stops')
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    with _working("shutting down…"):
        stack.stop()
    state_file.unlink(missing_ok=True)
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
        blobs = open_configured_blob_store(
            ServiceSettings(
                blob_url=state["blob_url"], blob_keyring_path=Path(state["blob_keyring"])
            )
        )
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


def stack_environment(state: dict[str, str]) -> dict[str, str]:
    """The running stack's addresses as the variables that name them: Alive's settings
    (alive/settings.py) for a service or script run beside the stack, and the rest for
    other clients (the API, its CA, Triton)."""
    return {
        "ALIVE_KAFKA__BOOTSTRAP_SERVERS": state["kafka"],
        "ALIVE_BLOB_URL": state["blob_url"],
        "ALIVE_BLOB_KEYRING_PATH": state["blob_keyring"],
        "ALIVE_API": state["api"],
        "ALIVE_API_TLS_CA": state["api_tls_ca"],
        "ALIVE_TRITON_GRPC": state["triton_grpc"],
        "ALIVE_TRITON_METRICS": state["triton_metrics"],
        "ALIVE_TRUST_ANCHOR": state["trust_anchor"],
    }


def _env(args: argparse.Namespace) -> int:
    state = _running_stack()
    if args.json:
        print(json.dumps(state, indent=2))
        return 0
    for name, value in stack_environment(state).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def _topics(args: argparse.Namespace) -> int:
    changes = asyncio.run(ensure_topics(ServiceSettings(), alter=True))
    for name in changes.created:
        print(f"created {name}")
    for name, configs in changes.altered.items():
        for key, (found, value) in sorted(configs.items()):
            print(f"altered {name}: {key} {found} -> {value}")
    for name, configs in changes.unaltered.items():
        for key, (found, value) in sorted(configs.items()):
            print(f"differs {name}: {key} {found}, {value} declared (the broker cannot alter it)")
    for name, (count, declared) in changes.partitions_differ.items():
        print(f"left alone {name}: {count} partitions, {declared} declared (never changed here)")
    if not (changes.created or changes.altered or changes.unaltered or changes.partitions_differ):
        print("every topic is as declared")
    return 0


def _add_dlq_commands(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="list or replay dead-lettered records")
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every dead letter, with why (never its value)")
    listing.add_argument("--json", action="store_true", help="one JSON list")
    again = actions.add_parser("replay", help="re-drive dead letters (dry run unless --apply)")
    for parser in (listing, again):
        parser.add_argument("--job-id", action="append", default=[], help="repeatable")
        parser.add_argument("--reason", action="append", default=[], help="a reason code")
        parser.add_argument("--stage", action="append", default=[], help="the stage that gave up")
    again.add_argument("--all", action="store_true", help="every dead letter")
    again.add_argument("--apply", action="store_true", help="send (default: only say what)")


def _dlq(args: argparse.Namespace) -> int:
    settings = ServiceSettings()
    selection = dlq.Selection(
        frozenset(args.job_id),
        frozenset(args.reason),
        frozenset(args.stage),
        everything=getattr(args, "all", False),
    )
    if args.dlq_command == "replay" and selection.empty:
        console.print("[red]say which: --job-id, --reason, --stage or --all")
        return 2
    blobs = open_configured_blob_store(settings)
    letters = [x for x in asyncio.run(dlq.read_dead_letters(settings)) if selection.takes(x)]
    planned = dlq.plan(settings, StageLedger(blobs), letters)
    if args.dlq_command == "list":
        if args.json:
            print(json.dumps([_letter_json(p) for p in planned], indent=2))
        else:
            _print_letters(planned, "")
        return 0
    if args.apply:
        planned = asyncio.run(dlq.replay(settings, blobs, planned))
        _print_letters(planned, "replay")
        return 1 if any(p.refused for p in planned) else 0
    _print_letters(planned, "dry run")
    console.print("a dry run: nothing sent (--apply sends)")
    return 0


def _letter_json(item: dlq.Replay) -> dict[str, Any]:
    letter = item.letter
    return {
        "dlq": letter.where,
        "stage": letter.stage,
        "reason": letter.reason,
        "error": letter.error,
        "job_id": letter.job_id,
        "topic": letter.topic,
        "partition": letter.original_partition,
        "offset": letter.original_offset,
        "payload_ref": letter.payload_ref,
        "replayable": item.refused is None,
        "refused": item.refused,
        "ledger": item.ledger,
    }


def _print_letters(planned: list[dlq.Replay], mode: str) -> None:
    table = Table("dlq", "stage", "reason", "job", "from", "replay" if mode else "error")
    for item in planned:
        letter = item.letter
        if not mode:
            last = letter.error
        elif item.refused:
            last = f"refused: {item.refused}"
        else:
            verb = "sent" if item.sent else "would send"
            last = (
                f"{verb} ({item.ledger})" if item.ledger else f"{verb}: the stage will work on it"
            )
        table.add_row(
            letter.where,
            letter.stage,
            letter.reason,
            letter.job_id or "-",
            f"{letter.topic}:{letter.original_partition}:{letter.original_offset}",
            last,
        )
    Console().print(table)
    console.print(f"{len(planned)} dead letter(s)")


def _add_provenance_commands(commands: Any) -> None:
    verify = commands.add_parser(
        "verify", help="check the C2PA provenance of files (exit 0 trusted, 1 invalid, 2 untrusted)"
    )
    verify.add_argument("files", nargs="+", type=Path, help="JPEG, PNG, MP4, ... from any tool")
    verify.add_argument(
        "--trust-anchor",
        action="append",
        type=Path,
        help=f"root certificate(s) to trust, PEM; repeatable (default: {DEV_TRUST_ANCHOR}, "
        "the embedded stack's, when it exists)",
    )
    verify.add_argument("--json", action="store_true", help="one JSON list of results")
    dev_chain = commands.add_parser(
        "dev-chain", help="make a development C2PA signing chain in DIR (reused when valid)"
    )
    dev_chain.add_argument("directory", type=Path, help="where the chain's files go")
    dev_chain.add_argument(
        "--organisation", default="Alive development", help="the certificates' organisation"
    )


def _verify(args: argparse.Namespace) -> int:
    anchors = args.trust_anchor or [p for p in (DEV_TRUST_ANCHOR,) if p.exists()]
    try:
        pem = read_anchors(anchors)
    except OSError as exc:
        console.print(f"[red]cannot read a trust anchor: {exc}")
        return 1
    text, code = report(args.files, pem, as_json_lines=args.json)
    print(text)
    return code


def _dev_chain(args: argparse.Namespace) -> int:
    chain = ensure_dev_chain(args.directory, organisation=args.organisation)
    print(f"ALIVE_PROVENANCE__CERT_DIR={args.directory.resolve()}")
    print(f"ALIVE_PROVENANCE__TRUST_ANCHOR_PATH={chain.root_cert.resolve()}")
    console.print("a development chain: trusted by nobody but who trusts its root")
    return 0


def _demo(args: argparse.Namespace) -> int:
    photos = args.photo or list(SAMPLES)
    prompts = args.prompt or list(PROMPTS)
    with console.status(f"animating {len(photos)} photo(s) x {len(prompts)} prompt(s)…"):
        sheets = write_sheets(photos, prompts, args.out, seed=args.seed)
    for sheet in sheets:
        print(sheet)
    return 0


def _submit_and_show(
    client: AliveClient,
    args: argparse.Namespace,
    blobs: BlobStore,
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
    console.print(f"animator effects: {effects_line(args.prompt or DEFAULT_PROMPT)}")
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
    the ``shown``-th on, and a line per progress report of a long stage (generation)."""
    events = client.watch(job_id, stop_at_ready=stop_at_ready)
    if not console.is_terminal:
        started, transitions = time.monotonic(), 0
        for event in events:
            if event.HasField("progress"):
                console.print(f"{time.monotonic() - started:6.1f} s  {_progress_text(event)}")
                continue
            transitions += 1
            if transitions <= shown:
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
            if event.HasField("progress"):
                progress.update(task, description=f"{_progress_text(event)}…")
                continue
            if _held(event):
                break
            done = STEPS_TO_READY.index(event.state) + 1 if event.state in STEPS_TO_READY else 0
            working = PIPELINE.next_stage(event.state)
            # Drawn at once, not at the next refresh: a stage quicker than a refresh still shows.
            progress.update(
                task,
                completed=done,
                description=f"{working.name}…" if working else JobState.Name(event.state).lower(),
                refresh=True,
            )
    return client.get(job_id)


def _progress_text(report: StatusEvent) -> str:
    """e.g. "generator 12/30 steps"."""
    progress = report.progress
    return f"{report.stage} {progress.done}/{progress.total} {progress.unit}".rstrip()


def _held(event: StatusEvent) -> bool:
    """Review holds the job for a person: it stays READY until a reviewer decides."""
    return event.stage == REVIEW.name and event.verdict == Verdict.REVIEW


def _save_video(blobs: BlobStore, view: JobView, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"alive-{view.job_id[:8]}.mp4"
    with blobs.local_copy(view.video) as video:
        shutil.copyfile(video, target)
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
