"""Every reason code Alive gives, and the one shape a "no" or a failure takes.

A reason code says why a job was rejected, vetoed or failed, or why an event was
dead-lettered. It is a contract: clients match on it, SREs alert on it
(``alive_vetoes_total{reason=…}``), docs/reason-codes.md explains each one (a test keeps that
page and this enum equal). The human-readable detail beside a code is for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The gRPC trailer in which the API names the reason code of an INVALID_ARGUMENT or
# FAILED_PRECONDITION answer (docs/api.md).
REASON_TRAILER = "alive-reason-code"
# The trailer with seconds to wait before retrying a RESOURCE_EXHAUSTED or UNAVAILABLE answer.
RETRY_AFTER_TRAILER = "alive-retry-after-s"


class ReasonCode(StrEnum):
    # Ingest rejections (state REJECTED; through the gRPC API, INVALID_ARGUMENT).
    PHOTO_REF_OUTSIDE_STORE = "PHOTO_REF_OUTSIDE_STORE"
    PHOTO_REF_NOT_OWN_UPLOAD = "PHOTO_REF_NOT_OWN_UPLOAD"
    PHOTO_NOT_FOUND = "PHOTO_NOT_FOUND"
    PHOTO_EMPTY = "PHOTO_EMPTY"
    PHOTO_TOO_LARGE = "PHOTO_TOO_LARGE"
    PHOTO_TOO_MANY_PIXELS = "PHOTO_TOO_MANY_PIXELS"
    PHOTO_UNDECODABLE = "PHOTO_UNDECODABLE"
    PHOTO_UNSUPPORTED_FORMAT = "PHOTO_UNSUPPORTED_FORMAT"
    PHOTO_TOO_SMALL = "PHOTO_TOO_SMALL"
    PROMPT_CONTROL_CHARACTERS = "PROMPT_CONTROL_CHARACTERS"
    PROMPT_TOO_LONG = "PROMPT_TOO_LONG"
    OUTPUT_SIZE_OUT_OF_RANGE = "OUTPUT_SIZE_OUT_OF_RANGE"
    OUTPUT_SIZE_NOT_EVEN = "OUTPUT_SIZE_NOT_EVEN"
    OUTPUT_FPS_OUT_OF_RANGE = "OUTPUT_FPS_OUT_OF_RANGE"
    OUTPUT_DURATION_OUT_OF_RANGE = "OUTPUT_DURATION_OUT_OF_RANGE"
    MISSING_CREATOR_ID = "MISSING_CREATOR_ID"
    MISSING_REQUEST_ID = "MISSING_REQUEST_ID"
    # Submit refused for now (gRPC RESOURCE_EXHAUSTED): too many jobs under way.
    CREATOR_JOBS_IN_FLIGHT = "CREATOR_JOBS_IN_FLIGHT"
    JOBS_IN_FLIGHT = "JOBS_IN_FLIGHT"
    # Submit refused for now (gRPC UNAVAILABLE): the job cannot be queued (broker, topics or
    # blob store unusable).
    QUEUE_UNAVAILABLE = "QUEUE_UNAVAILABLE"
    INVALID_CREATOR_ID = "INVALID_CREATOR_ID"
    INVALID_REQUEST_ID = "INVALID_REQUEST_ID"
    # Photo checkpoint vetoes (PHOTO_UNDECODABLE and PHOTO_TOO_SMALL too).
    PHOTO_BLANK = "PHOTO_BLANK"
    PHOTO_SEXUAL = "PHOTO_SEXUAL"
    PHOTO_MINOR_SAFETY = "PHOTO_MINOR_SAFETY"
    PHOTO_TEXT = "PHOTO_TEXT"
    # Prompt checkpoint vetoes, one per policy category (services/moderation/policy.yaml).
    PROMPT_SEXUAL = "PROMPT_SEXUAL"
    PROMPT_MINOR_SAFETY = "PROMPT_MINOR_SAFETY"
    PROMPT_VIOLENCE = "PROMPT_VIOLENCE"
    PROMPT_WEAPONS = "PROMPT_WEAPONS"
    PROMPT_SELF_HARM = "PROMPT_SELF_HARM"
    PROMPT_HATE = "PROMPT_HATE"
    PROMPT_DECEPTION = "PROMPT_DECEPTION"
    PROMPT_DRUGS = "PROMPT_DRUGS"
    PROMPT_SPAM = "PROMPT_SPAM"
    PROMPT_GORE = "PROMPT_GORE"
    PROMPT_HARASSMENT = "PROMPT_HARASSMENT"
    PROMPT_PII = "PROMPT_PII"
    # Prompt checkpoint "review" findings: the job goes on, marked for a person.
    PROMPT_REAL_PERSON = "PROMPT_REAL_PERSON"
    PROMPT_LANGUAGE_NOT_COVERED = "PROMPT_LANGUAGE_NOT_COVERED"
    # Video checkpoint vetoes.
    VIDEO_UNDECODABLE = "VIDEO_UNDECODABLE"
    VIDEO_SIZE_MISMATCH = "VIDEO_SIZE_MISMATCH"
    VIDEO_FRAME_COUNT_MISMATCH = "VIDEO_FRAME_COUNT_MISMATCH"
    VIDEO_DURATION_MISMATCH = "VIDEO_DURATION_MISMATCH"
    VIDEO_NO_AUDIO = "VIDEO_NO_AUDIO"
    AUDIO_DURATION_MISMATCH = "AUDIO_DURATION_MISMATCH"
    VIDEO_SEXUAL = "VIDEO_SEXUAL"
    VIDEO_MINOR_SAFETY = "VIDEO_MINOR_SAFETY"
    VIDEO_TEXT = "VIDEO_TEXT"
    VIDEO_SPEECH = "VIDEO_SPEECH"
    # Any stage that needs earlier stages' signed decisions (alive/attestation.py).
    ATTESTATION_MISSING = "ATTESTATION_MISSING"
    ATTESTATION_INVALID = "ATTESTATION_INVALID"
    # Review vetoes, and the publish request for a job that is not READY.
    REVIEW_VIDEO_CHANGED = "REVIEW_VIDEO_CHANGED"
    REVIEW_PROVENANCE_NOT_TRUSTED = "REVIEW_PROVENANCE_NOT_TRUSTED"
    JOB_NOT_READY = "JOB_NOT_READY"
    REVIEW_HUMAN_REQUIRED = "REVIEW_HUMAN_REQUIRED"
    REVIEW_RATE_LIMITED = "REVIEW_RATE_LIMITED"
    REVIEW_SAMPLED = "REVIEW_SAMPLED"
    # A reviewer rejected it (with one of the REPORTED_* / checkpoint codes beside it), or a
    # decision that does not verify (forged, or about another video).
    REVIEW_REJECTED = "REVIEW_REJECTED"
    REVIEW_DECISION_INVALID = "REVIEW_DECISION_INVALID"
    # User reports: the reason a user gives, one per moderation category
    # (services/moderation/policy.yaml); SEVERE_REPORT_REASONS unpublish at once.
    REPORTED_SEXUAL = "REPORTED_SEXUAL"
    REPORTED_SEXUAL_MINOR = "REPORTED_SEXUAL_MINOR"
    REPORTED_VIOLENCE = "REPORTED_VIOLENCE"
    REPORTED_GORE = "REPORTED_GORE"
    REPORTED_WEAPONS = "REPORTED_WEAPONS"
    REPORTED_SELF_HARM = "REPORTED_SELF_HARM"
    REPORTED_HATE = "REPORTED_HATE"
    REPORTED_HARASSMENT = "REPORTED_HARASSMENT"
    REPORTED_REAL_PERSON = "REPORTED_REAL_PERSON"
    REPORTED_DECEPTION = "REPORTED_DECEPTION"
    REPORTED_DRUGS = "REPORTED_DRUGS"
    REPORTED_SPAM = "REPORTED_SPAM"
    REPORTED_PII = "REPORTED_PII"
    REPORTED_THRESHOLD = "REPORTED_THRESHOLD"
    REPORT_REASON_UNKNOWN = "REPORT_REASON_UNKNOWN"
    # The gRPC API's Cancel on a job that has already ended.
    JOB_ENDED = "JOB_ENDED"
    # The job was erased: Submit with its request id is refused (use a new one); a published
    # video of it is unpublished with this reason.
    JOB_ERASED = "JOB_ERASED"
    # Failures (state FAILED, the event dead-lettered).
    STAGE_ERROR = "STAGE_ERROR"
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
    MODEL_REJECTED_INPUT = "MODEL_REJECTED_INPUT"
    MODEL_BAD_OUTPUT = "MODEL_BAD_OUTPUT"
    PROVENANCE_NOT_TRUSTED = "PROVENANCE_NOT_TRUSTED"
    OUTPUT_TOO_LARGE = "OUTPUT_TOO_LARGE"
    # Blobs the store refuses (alive/blobs.py); a stage reports them as its own code or,
    # for a photo reference on Kafka, as the rejection.
    BLOB_NOT_FOUND = "BLOB_NOT_FOUND"
    BLOB_OUTSIDE_STORE = "BLOB_OUTSIDE_STORE"
    BLOB_NOT_REGULAR_FILE = "BLOB_NOT_REGULAR_FILE"
    BLOB_TOO_LARGE = "BLOB_TOO_LARGE"
    BLOB_CHECKSUM_MISMATCH = "BLOB_CHECKSUM_MISMATCH"
    BLOB_EXISTS = "BLOB_EXISTS"
    # Encryption at rest (alive/encryption.py).
    BLOB_NOT_ENCRYPTED = "BLOB_NOT_ENCRYPTED"
    BLOB_DECRYPT_FAILED = "BLOB_DECRYPT_FAILED"
    BLOB_KEY_UNKNOWN = "BLOB_KEY_UNKNOWN"
    BLOB_KEY_DESTROYED = "BLOB_KEY_DESTROYED"
    # Dead-lettered events that name no usable job.
    UNDECODABLE_EVENT = "UNDECODABLE_EVENT"
    EVENT_WITHOUT_JOB_ID = "EVENT_WITHOUT_JOB_ID"
    INVALID_JOB_ID = "INVALID_JOB_ID"
    UNPROCESSABLE_EVENT = "UNPROCESSABLE_EVENT"


# What a user may give as the reason of a report: the moderation vocabulary.
REPORT_REASONS = frozenset(c for c in ReasonCode if c.startswith("REPORTED_")) - {
    ReasonCode.REPORTED_THRESHOLD
}
# What a reviewer may reject a video with: the content findings of the checkpoints (their
# policy categories) and the report vocabulary.
REVIEWER_REASONS = REPORT_REASONS | frozenset(
    {
        ReasonCode.PHOTO_SEXUAL,
        ReasonCode.PHOTO_MINOR_SAFETY,
        ReasonCode.PHOTO_TEXT,
        *(c for c in ReasonCode if c.startswith("PROMPT_")),
        ReasonCode.VIDEO_SEXUAL,
        ReasonCode.VIDEO_MINOR_SAFETY,
        ReasonCode.VIDEO_TEXT,
        ReasonCode.VIDEO_SPEECH,
    }
) - {ReasonCode.PROMPT_CONTROL_CHARACTERS, ReasonCode.PROMPT_TOO_LONG}
# Report reasons so grave that one report takes the video off Stories at once, before a
# person looks (the default of the review web app's ``severe_report_reasons`` setting).
SEVERE_REPORT_REASONS = frozenset(
    {ReasonCode.REPORTED_SEXUAL_MINOR, ReasonCode.REPORTED_SELF_HARM, ReasonCode.REPORTED_GORE}
)


@dataclass(frozen=True)
class Finding:
    """One reason a job stops: the code to match on and a detail for people.

    A detail never contains a prompt or image bytes (it is logged and sent on alive.status).
    """

    code: ReasonCode
    detail: str = ""


class ReasonError(Exception):
    """An error that carries its reason code: validation failures and permanent failures."""

    def __init__(self, code: ReasonCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.finding = Finding(code, detail)

    @property
    def reason_code(self) -> ReasonCode:
        return self.finding.code

    @property
    def detail(self) -> str:
        return self.finding.detail
