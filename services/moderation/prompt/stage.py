"""Moderation, prompt checkpoint.

Consumes Job from alive.photo-cleared; emits it unchanged to alive.prompt-cleared. Vetoes a
prompt that contains a term of a policy category (services/moderation/prompt/terms.py,
prompt_terms.json), with that category's reason code, e.g. PROMPT_VIOLENCE; every matching
category is reported. Semantic classifiers come in their own issue.
"""

from __future__ import annotations

from alive.blobs import BlobStore
from alive.pipeline import MODERATION_PROMPT
from alive.reasons import Finding
from alive.stage import Stage, StageContext, Veto
from alive.v1.events_pb2 import Job
from services.moderation.prompt.settings import PromptCheckpointSettings
from services.moderation.prompt.terms import TermList


class PromptCheckpoint(Stage[Job, PromptCheckpointSettings]):
    spec = MODERATION_PROMPT

    def __init__(self, settings: PromptCheckpointSettings, blobs: BlobStore) -> None:
        super().__init__(settings, blobs)
        self.terms = TermList.load(settings.prompt_terms_path)

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        hits = self.terms.matches(event.prompt)
        if hits:
            # The details name categories only: vetoes are logged and the prompt never is.
            return Veto(
                tuple(Finding(c.reason_code, f"prompt matches policy: {c.name}") for c in hits)
            )
        return event
