"""Ingest: the pipeline's front door.

Consumes ImagePromptRequest from alive.requests (other services publish there, and so does
Alive's own gRPC API). Validates the photo and prompt (services/ingest/validation.py),
stores the normalised photo as a blob, resolves the output spec and seed, and emits a Job
to alive.accepted. Rejects (state REJECTED, with a reason code) a photo or prompt that
fails validation; dead-letters a request without request_id or creator_id.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid

from alive.blobs import BlobError
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

# Job ids are uuid5 of (creator_id, request_id): the contract for callers who want to
# compute the id of their own request (docs/topics.md).
JOB_ID_NAMESPACE = uuid.UUID("6f1d8a8e-3b0c-5e55-9a51-a11fe0000000")


def job_id_for(creator_id: str, request_id: str) -> str:
    return str(uuid.uuid5(JOB_ID_NAMESPACE, f"{creator_id}\x1f{request_id}"))


def seed_for(job_id: str) -> int:
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big") >> 1


class IngestStage(Stage[ImagePromptRequest, IngestSettings]):
    spec = INGEST

    def identify(self, event: ImagePromptRequest) -> JobIdentity:
        try:
            check_ids(event.creator_id, event.request_id)
        except InvalidInput as exc:  # names no job: dead-lettered, no status
            raise PermanentError(exc.reason_code, exc.detail) from exc
        return JobIdentity(
            job_id_for(event.creator_id, event.request_id), event.request_id, event.creator_id
        )

    async def process(self, event: ImagePromptRequest, ctx: StageContext) -> Job | Veto:
        job_id = ctx.identity.job_id
        key = self.blobs.key_for(event.photo.uri)
        if key is None or not key.startswith("uploads/"):
            return Veto.of(
                ReasonCode.PHOTO_REF_OUTSIDE_STORE,
                "the photo must be under uploads/ in Alive's blob store",
            )
        try:
            data = await asyncio.to_thread(self.blobs.get_bytes, event.photo)
        except BlobError as exc:
            if exc.reason_code == ReasonCode.BLOB_NOT_FOUND:
                return Veto.of(ReasonCode.PHOTO_NOT_FOUND, exc.detail)
            return Veto((exc.finding,))
        try:
            photo = await asyncio.to_thread(validate_photo, data, self.settings)
            prompt = normalise_prompt(event.prompt, self.settings)
            output = resolve_output(event.output, self.settings)
        except InvalidInput as exc:
            return Veto((exc.finding,))
        photo_ref = await asyncio.to_thread(
            self.blobs.put_bytes, f"photos/{job_id}.png", photo.png, "image/png"
        )
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
        )
