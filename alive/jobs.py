"""Facts about a job that several stages and clients compute the same way: its state
machine, its frame count, where its videos are kept, the upload area of a request.

A job moves forward through the states its stages reach (alive/pipeline.py) to READY (the
creator sees it) and PUBLISHED (live on a Story), or ends early: REJECTED (bad input,
ingest), VETOED (a checkpoint or review said no), FAILED (a stage could not process it) or
CANCELLED (its creator cancelled it).
A terminal state is final: later events for the job do not change it.
"""

from __future__ import annotations

import hashlib
import re

from alive.v1.events_pb2 import JobState, OutputSpec

# The prompt a job gets when it asks for none.
DEFAULT_PROMPT = "make this photo come alive"

TERMINAL_STATES: frozenset[JobState.ValueType] = frozenset(
    {JobState.PUBLISHED, JobState.REJECTED, JobState.VETOED, JobState.FAILED, JobState.CANCELLED}
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


def upload_area(creator_id: str, request_id: str) -> str:
    """The blob key prefix a request's photo must be uploaded under (``uploads/<creator>/
    <request>/``): ingest takes a photo reference only from its own request's area, so a
    request cannot name another creator's or another request's upload. Ids are valid_id,
    which keeps them single, non-dot path segments."""
    return f"uploads/{creator_id}/{request_id}/"


def is_terminal(state: JobState.ValueType) -> bool:
    return state in TERMINAL_STATES


def frame_count(spec: OutputSpec) -> int:
    """Frames a video of this spec has: duration x fps, rounded."""
    return max(1, round(spec.duration_ms * spec.fps / 1000))


# The step whose video is the one a creator sees and may publish (earlier steps'
# videos are intermediates).
PUBLISHED_VIDEO_STEP = "signed"


def photo_prefix(job_id: str) -> str:
    """Where a job's cleaned photo is kept; the key adds an unguessable part (alive/blobs.py
    ``output_key``)."""
    return f"photos/{job_id}/photo"


def video_prefix(job_id: str, step: str) -> str:
    """Where a job's video after a step (generated, scored, signed) is kept; the key adds
    an unguessable part (alive/blobs.py ``output_key``)."""
    return f"videos/{job_id}/{step}"


# Where the rest of a job's blobs are kept (each key adds an unguessable part). Erasure
# (alive/erasure.py) deletes what is under each.
def prompt_prefix(job_id: str) -> str:
    """The prompt ingest stores for the review page (Job.prompt_ref)."""
    return f"prompts/{job_id}/prompt"


def dead_letter_prefix(job_id: str | None) -> str:
    """Records of the job dead-lettered, kept whole in the blob store (alive.dlq holds a
    reference); those that name no job go under ``dlq/_unidentified``."""
    return f"dlq/{job_id or '_unidentified'}/"


def publish_log_key(creator_id: str) -> str:
    """The review service's record of when the creator's videos went live (rate limit)."""
    digest = hashlib.sha256(creator_id.encode()).hexdigest()
    return f"ledger/review-rate/{digest}.json"
