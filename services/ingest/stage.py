"""Ingest: the pipeline's front door.

Consumes ImagePromptRequest from alive.requests (other services publish there, and so does
Alive's own gRPC API). Validates the photo and prompt (services/ingest/validation.py),
stores the normalised photo as a blob, resolves the output spec and seed, and emits a Job
to alive.accepted. Takes a photo only from the request's own upload area (alive/jobs.py
``upload_area``). Indexes the job under its creator (what erasure finds a creator's jobs
by: alive/erasure.py), stores the prompt as a blob for the review page (Job.prompt_ref), and
records the person's training-use choice on the job and as a signed score
(alive/consent.py). Rejects (state REJECTED, with a reason code) a photo or prompt that fails
validation; dead-letters a request without request_id or creator_id.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from alive.blobs import BlobError, BlobStore, output_key
from alive.consent import TRAINING_CONSENT_SCORE, consent_score
from alive.erasure import ErasedJob, record_job
from alive.jobs import photo_prefix, prompt_prefix, upload_area
from alive.limits import JobLimits
from alive.pipeline import INGEST
from alive.reasons import ReasonCode
from alive.stage import JobIdentity, PermanentError, Stage, StageContext, Veto
from alive.v1.events_pb2 import ImagePromptRequest, Job, PhotoInfo
from services.ingest.settings import IngestSettings
from services.ingest.validation import (
    InvalidInput,
    check_ids,
    normalise_prompt,
    resolve_output,
    validate_photo,
)


class JobIds:
    """Job ids: HMAC-SHA256 of (creator id, request id) under a secret key, 128 bits in hex.

    The same request of the same creator is always the same job (idempotency, per creator),
    yet no one without the key can compute or guess a job id. A publisher on alive.requests
    learns its job's id from alive.status, where every event names request and creator.
    """

    MIN_KEY_BYTES = 32

    def __init__(self, key: bytes) -> None:
        if len(key) < self.MIN_KEY_BYTES:
            raise ValueError(f"the job id key must be at least {self.MIN_KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> JobIds:
        if settings.job_id_key_path is None:
            raise ValueError("set ALIVE_INGEST__JOB_ID_KEY_PATH (a secret of 32+ bytes)")
        return cls(settings.job_id_key_path.read_bytes().strip())

    def for_request(self, creator_id: str, request_id: str) -> str:
        message = f"{creator_id}\x1f{request_id}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]


def seed_for(job_id: str) -> int:
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big") >> 1


class IngestStage(Stage[ImagePromptRequest, IngestSettings]):
    spec = INGEST

    def __init__(self, settings: IngestSettings, blobs: BlobStore, limits: JobLimits) -> None:
        super().__init__(settings, blobs)
        self.limits = limits
        self.job_ids = JobIds.from_settings(settings)

    def identify(self, event: ImagePromptRequest) -> JobIdentity:
        try:
            check_ids(event.creator_id, event.request_id)
        except InvalidInput as exc:  # names no job: dead-lettered, no status
            raise PermanentError(exc.reason_code, exc.detail) from exc
        job_id = self.job_ids.for_request(event.creator_id, event.request_id)
        return JobIdentity(job_id, event.request_id, event.creator_id)

    async def process(self, event: ImagePromptRequest, ctx: StageContext) -> Job | Veto:
        job_id = ctx.identity.job_id
        # First: a job that ends here (rejected) has an upload to erase all the same.
        owner = ErasedJob(job_id, event.creator_id, event.request_id)
        await asyncio.to_thread(record_job, self.blobs, owner)
        key = self.blobs.key_for(event.photo.uri)
        area = upload_area(event.creator_id, event.request_id)
        if key is None:
            return Veto.of(
                ReasonCode.PHOTO_REF_OUTSIDE_STORE, "the photo must be in Alive's blob store"
            )
        if not key.startswith(area):
            return Veto.of(
                ReasonCode.PHOTO_REF_NOT_OWN_UPLOAD,
                "the photo must be under this request's upload area, uploads/<creator>/<request>/",
            )
        try:
            data = await asyncio.to_thread(self.blobs.get_bytes, event.photo)
        except BlobError as exc:
            if exc.reason_code == ReasonCode.BLOB_NOT_FOUND:
                return Veto.of(ReasonCode.PHOTO_NOT_FOUND, exc.detail)
            return Veto((exc.finding,))
        try:
            photo = await asyncio.to_thread(validate_photo, data, self.settings, self.limits)
            prompt = normalise_prompt(event.prompt, self.settings)
            output = resolve_output(event.output, self.limits.output)
        except InvalidInput as exc:
            return Veto((exc.finding,))
        photo_ref = await asyncio.to_thread(
            self.blobs.put_bytes, output_key(photo_prefix(job_id), ".png"), photo.png, "image/png"
        )
        prompt_ref = await asyncio.to_thread(
            self.blobs.put_bytes,
            output_key(prompt_prefix(job_id), ".txt"),
            prompt.encode(),
            "text/plain; charset=utf-8",
        )
        ctx.scores[TRAINING_CONSENT_SCORE] = consent_score(event.training_use_consent)
        return Job(
            job_id=job_id,
            request_id=event.request_id,
            creator_id=event.creator_id,
            prompt=prompt,
            photo=photo_ref,
            photo_info=PhotoInfo(
                width=photo.width, height=photo.height, source_format=photo.source_format
            ),
            output=output,
            seed=event.seed if event.HasField("seed") else seed_for(job_id),
            submitted_at_ms=event.submitted_at_ms,
            training_use_consent=event.training_use_consent,
            prompt_ref=prompt_ref,
        )
