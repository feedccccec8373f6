"""Moderation, prompt checkpoint.

Consumes Job from alive.photo-cleared; emits it to alive.prompt-cleared. Judges the prompt
under the moderation policy (services/moderation/policy.yaml, classifier.py): "block" vetoes
with the reason code of every matching category (e.g. PROMPT_VIOLENCE); "review" lets the job
go on, marked (verdict REVIEW with the reasons) so that review never publishes it without a
person; "allow" passes it. The prompt is judged together with what the photo checkpoint
signed about the photo: an apparent minor makes anything sexual sexual_minor, and an
identifiable face makes a prompt that has the person act or speak a review. Vetoes and
statuses name categories, never the prompt.
"""

from __future__ import annotations

from collections.abc import Mapping

from alive.attestation import signed_scores
from alive.blobs import BlobStore
from alive.pipeline import MODERATION_PHOTO, MODERATION_PROMPT
from alive.stage import Stage, StageContext, Veto
from alive.v1.events_pb2 import Job
from services.moderation.policy import load_policy
from services.moderation.prompt.classifier import NER_MODEL, PhotoFacts, PromptClassifier
from services.moderation.prompt.settings import PromptCheckpointSettings


class PromptCheckpoint(Stage[Job, PromptCheckpointSettings]):
    spec = MODERATION_PROMPT

    def __init__(self, settings: PromptCheckpointSettings, blobs: BlobStore) -> None:
        super().__init__(settings, blobs)
        self.classifier = PromptClassifier(load_policy(settings.policy_path))

    def _photo_facts(self, job: Job) -> PhotoFacts:
        """What the photo checkpoint signed about the photo (the runner has checked that
        attestation before this stage runs)."""
        scores = signed_scores(job, MODERATION_PHOTO.name)
        minor_below = self.classifier.policy.image.faces.minor_age_below
        return PhotoFacts(
            faces=int(scores.get("faces", 0)),
            apparent_minor=scores.get("apparent_min_age", minor_below) < minor_below,
        )

    def versions(self) -> Mapping[str, str]:
        return {
            "policy": self.classifier.policy.version,
            "meaning": "all-MiniLM-L6-v2",
            "names": NER_MODEL,
        }

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        decision = self.classifier.classify(event.prompt, photo=self._photo_facts(event))
        if decision.decision == "block":
            return Veto(decision.findings)
        ctx.review.extend(decision.findings)
        return event
