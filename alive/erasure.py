"""Erasure: everything Alive keeps about a job, or about every job of a creator, deleted on
request, for good, with a receipt (the gRPC API's Erase; docs/privacy.md).

Erasing a job is, in order:

1. its erasure mark (``StageLedger.mark_erased``). From then on no stage works on the job:
   the runner checks the mark before anything else (alive/processing.py), so a replay of old
   events restores nothing, and a stage at work on it stops at its next cancellation check
   and deletes what it made (``delete_job_outputs``);
2. the ``Eraser``'s steps, in their order. Each is an ``ErasureStep``: a name, and a
   coroutine that deletes one kind of thing and counts it on the receipt. The core's steps
   (``job_data_steps``) delete the job's blobs and ledger entries; a service adds the steps
   only it can take (ingest: tombstones on its topics), and any other kind of deletion
   (destroying the job's data key, a tombstone on another topic) is one more step in that
   list. The creator index goes last, so a creator erasure that stops part-way can be asked
   again and finds every job it has not finished.

Finding a creator's jobs takes an index, written by ingest where jobs are made
(``record_job``): ``index/jobs/<job>`` names the job's creator and request,
``index/creators/<creator>/<job>`` lists the creator's jobs.

Every step may run twice (an erasure asked again, after a failure or not): deleting what is
gone counts nothing.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from alive.blobs import BlobStore, StageLedger
from alive.encryption import EncryptingBlobStore
from alive.jobs import (
    dead_letter_prefix,
    photo_prefix,
    prompt_prefix,
    publish_log_key,
    upload_area,
    valid_id,
    video_prefix,
)
from alive.retention import MARKERS as RETENTION_MARKERS
from alive.telemetry import now_ms


@dataclass(frozen=True)
class ErasedJob:
    """A job to erase: its id, and its creator and request (which name its upload area)."""

    job_id: str
    creator_id: str
    request_id: str


@dataclass
class Receipt:
    """What an erasure deleted, and when: the gRPC API returns it."""

    erasure_id: str
    erased_at_ms: int
    job_ids: list[str] = field(default_factory=list)
    deleted: Counter[str] = field(default_factory=Counter)
    steps: list[str] = field(default_factory=list)

    @classmethod
    def new(cls) -> Receipt:
        return cls(erasure_id=secrets.token_hex(16), erased_at_ms=now_ms())

    def count(self, kind: str, deleted: int) -> None:
        self.deleted[kind] += deleted


@dataclass(frozen=True)
class ErasureStep:
    """One kind of deletion: ``erase`` deletes it for one job and counts it on the receipt."""

    name: str
    erase: Callable[[ErasedJob, Receipt], Awaitable[None]]


# The creator index (written by ingest, read by erasure).


def job_index_key(job_id: str) -> str:
    return f"index/jobs/{job_id}"


def creator_index_prefix(creator_id: str) -> str:
    if not valid_id(creator_id):
        raise ValueError("not a valid creator id")
    return f"index/creators/{creator_id}/"


def record_job(blobs: BlobStore, job: ErasedJob) -> None:
    """Indexes the job under its creator (ingest calls it as it makes the job; again on a
    redelivery, which writes the same)."""
    owner = {"creator_id": job.creator_id, "request_id": job.request_id}
    blobs.write_key(job_index_key(job.job_id), json.dumps(owner).encode())
    blobs.write_key(creator_index_prefix(job.creator_id) + job.job_id, b"")


def indexed_job(blobs: BlobStore, job_id: str) -> ErasedJob | None:
    """The job's creator and request as ingest indexed them; None for a job not indexed."""
    data = blobs.read_key(job_index_key(job_id)) if valid_id(job_id) else None
    if data is None:
        return None
    owner = json.loads(data)
    return ErasedJob(job_id, str(owner["creator_id"]), str(owner["request_id"]))


def creator_job_ids(blobs: BlobStore, creator_id: str) -> list[str]:
    prefix = creator_index_prefix(creator_id)
    return [key[len(prefix) :] for key in blobs.keys_under(prefix)]


# The core's steps.


def delete_job_outputs(blobs: BlobStore, job_id: str) -> Counter[str]:
    """Deletes the blobs stages made for the job (photo, prompt, videos, dead letters), by
    kind: what a stage that finds its job erased after working on it also calls."""
    prefixes = {
        "blobs.photos": photo_prefix(job_id) + "-",
        "blobs.prompts": prompt_prefix(job_id) + "-",
        "blobs.videos": video_prefix(job_id, ""),
        "blobs.dead_letters": dead_letter_prefix(job_id),
    }
    deleted: Counter[str] = Counter()
    for kind, prefix in prefixes.items():
        deleted[kind] += sum(blobs.delete_key(key) for key in blobs.keys_under(prefix))
    return deleted


def job_data_steps(blobs: BlobStore) -> list[ErasureStep]:
    """The core's steps: the job's blobs (its outputs and its upload), then its ledger
    entries (each stage's record, its cancellation, its reports) and the retention
    sweeper's markers."""
    ledger = StageLedger(blobs)

    def erase_blobs(job: ErasedJob, receipt: Receipt) -> None:
        for kind, count in delete_job_outputs(blobs, job.job_id).items():
            receipt.count(kind, count)
        upload = upload_area(job.creator_id, job.request_id)
        receipt.count("blobs.uploads", sum(map(blobs.delete_key, blobs.keys_under(upload))))

    def erase_ledger(job: ErasedJob, receipt: Receipt) -> None:
        entries = ledger.entries(job.job_id)
        receipt.count("ledger.entries", sum(map(blobs.delete_key, entries)))
        markers = blobs.keys_under(f"{RETENTION_MARKERS}{job.job_id}/")
        receipt.count("retention.markers", sum(map(blobs.delete_key, markers)))

    return [
        ErasureStep("blobs", _in_thread(erase_blobs)),
        ErasureStep("ledger", _in_thread(erase_ledger)),
    ]


def crypto_shredding(blobs: EncryptingBlobStore) -> ErasureStep:
    """The step after the job's data is deleted: its data key is destroyed, so whatever copy
    of its blobs is left anywhere (a backup, an old object version, a temporary file) can
    never be read again (alive/encryption.py)."""

    def shred(job: ErasedJob, receipt: Receipt) -> None:
        blobs.destroy_job_key(job.job_id)
        receipt.count("keys.destroyed", 1)

    return ErasureStep("keys", _in_thread(shred))


def _in_thread(
    step: Callable[[ErasedJob, Receipt], None],
) -> Callable[[ErasedJob, Receipt], Awaitable[None]]:
    async def run(job: ErasedJob, receipt: Receipt) -> None:
        await asyncio.to_thread(step, job, receipt)

    return run


class Eraser:
    """Erases jobs and creators: the erasure mark, then ``steps`` in order, then the index."""

    def __init__(self, blobs: BlobStore, steps: Sequence[ErasureStep]) -> None:
        self._blobs = blobs
        self._ledger = StageLedger(blobs)
        self.steps = list(steps)

    async def erase_jobs(self, jobs: Sequence[ErasedJob]) -> Receipt:
        receipt = Receipt.new()
        receipt.steps = ["mark", *(step.name for step in self.steps), "index"]
        mark = json.dumps(
            {"erasure_id": receipt.erasure_id, "erased_at_ms": receipt.erased_at_ms}
        ).encode()
        for job in jobs:
            # The mark first: from here on no stage works on the job, whatever arrives.
            await asyncio.to_thread(self._ledger.mark_erased, job.job_id, mark)
            for step in self.steps:
                await step.erase(job, receipt)
            await asyncio.to_thread(self._forget_index, job, receipt)
            receipt.job_ids.append(job.job_id)
        return receipt

    async def erase_creator(self, creator_id: str, known: Sequence[ErasedJob] = ()) -> Receipt:
        """Every job of the creator (the index's, and ``known`` ones not indexed yet, e.g.
        submitted and not through ingest), then what the creator has beside its jobs:
        uploads of requests that made no job, the review service's publish log."""
        indexed = await asyncio.to_thread(creator_job_ids, self._blobs, creator_id)
        jobs = {job.job_id: job for job in known}
        for job_id in indexed:
            if job_id not in jobs:
                job = await asyncio.to_thread(indexed_job, self._blobs, job_id)
                # An index entry without its job record: the request is unknown, its
                # upload area is deleted below with the creator's.
                jobs[job_id] = job or ErasedJob(job_id, creator_id, "_unknown")
        receipt = await self.erase_jobs(list(jobs.values()))
        await asyncio.to_thread(self._forget_creator, creator_id, receipt)
        return receipt

    def _forget_index(self, job: ErasedJob, receipt: Receipt) -> None:
        keys = [job_index_key(job.job_id), creator_index_prefix(job.creator_id) + job.job_id]
        receipt.count("index", sum(map(self._blobs.delete_key, keys)))

    def _forget_creator(self, creator_id: str, receipt: Receipt) -> None:
        uploads = self._blobs.keys_under(f"uploads/{creator_id}/")
        receipt.count("blobs.uploads", sum(map(self._blobs.delete_key, uploads)))
        receipt.count("review.publish_log", self._blobs.delete_key(publish_log_key(creator_id)))
        index = self._blobs.keys_under(creator_index_prefix(creator_id))
        receipt.count("index", sum(map(self._blobs.delete_key, index)))
