"""Facts about a job that several stages and clients compute the same way: its state
machine, its frame count, where its videos are kept.

A job moves forward through the states its stages reach (alive/pipeline.py) to READY (the
creator sees it) and PUBLISHED (live on a Story), or ends early: REJECTED (bad input,
ingest), VETOED (a checkpoint or review said no) or FAILED (a stage could not process it).
A terminal state is final: later events for the job do not change it.
"""

from __future__ import annotations

import re

from alive.v1.events_pb2 import JobState, OutputSpec

# The prompt a job gets when it asks for none.
DEFAULT_PROMPT = "make this photo come alive"

TERMINAL_STATES: frozenset[JobState.ValueType] = frozenset(
    {JobState.PUBLISHED, JobState.REJECTED, JobState.VETOED, JobState.FAILED}
)
# Where a creator stops waiting: the video is ready to see, or the job ended.
SETTLED_STATES: frozenset[JobState.ValueType] = TERMINAL_STATES | {JobState.READY}


# Ids (job, request, creator) name ledger files and travel in headers, events and logs: a
# safe alphabet and a bound, checked wherever an id enters.
MAX_ID_CHARS = 128
_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:@+=-]{{0,{MAX_ID_CHARS - 1}}}")


def valid_id(value: str) -> bool:
    """Letters, digits and ``. _ : @ + = -``, starting with a letter or digit, at most
    MAX_ID_CHARS."""
    return _ID.fullmatch(value) is not None


def is_terminal(state: JobState.ValueType) -> bool:
    return state in TERMINAL_STATES


def frame_count(spec: OutputSpec) -> int:
    """Frames a video of this spec has: duration x fps, rounded."""
    return max(1, round(spec.duration_ms * spec.fps / 1000))


def video_key(job_id: str, step: str) -> str:
    """Blob key of a job's video after a step (generated, scored, signed)."""
    return f"videos/{job_id}/{step}.mp4"
