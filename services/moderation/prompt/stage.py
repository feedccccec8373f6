"""Moderation, prompt checkpoint.

Consumes Job from alive.photo-cleared; emits it to alive.prompt-cleared. Judges the prompt
under the moderation policy (services/moderation/policy.yaml, classifier.py): "block" vetoes
with the reason code of every matching category (e.g. PROMPT_VIOLENCE); "review" lets the job
go on, marked (verdict REVIEW with the reasons) so that review never publishes it without a
person; "allow" passes it. Vetoes and statuses name categories, never the prompt.
"""

from __future__ import annotations

from collections.abc import Mapping

from alive.blobs import BlobStore
from alive.pipeline import MODERATION_PROMPT
from alive.stage import Stage, StageContext, Veto
from alive.v1.events_pb2 import Job
from services.moderation.policy import load_policy
from services.moderation.prompt.classifier import PromptClassifier
from services.moderation.prompt.settings import PromptCheckpointSettings


class PromptCheckpoint(Stage[Job, PromptCheckpointSettings]):
    spec = MODERATION_PROMPT

    def __init__(self, settings: PromptCheckpointSettings, blobs: BlobStore) -> None:
        super().__init__(settings, blobs)
        self.classifier = PromptClassifier(load_policy(settings.policy_path))

    def versions(self) -> Mapping[str, str]:
        return {"policy": self.classifier.policy.version}

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        decision = self.classifier.classify(event.prompt)
        if decision.decision == "block":
            return Veto(decision.findings)
        ctx.review.extend(decision.findings)
        return event
