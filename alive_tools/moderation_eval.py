"""``make eval``: the prompt and photo checkpoints measured on labelled sets.

Each prompt goes through the moderation-prompt service's own code path (its stage, through
the same event processor the runner uses, alive_tools.testing.StageHarness), so what is
measured is what the service decides. Input: JSON lines with "prompt", "label" (allow or
block) and "category" (tests/data/moderation/prompts.jsonl by default). Output: a summary on
stdout and out/eval.json: {"items": [{"decision": "allow|review|block", "reason_codes":
[...]}, ...] in input order, "summary": {...}}.

"review" means the job goes on, held for a person before it is published: it is counted as
caught in ``recall_caught`` and as not blocked in ``false_block_rate``.

Photos (``--photos``, tests/data/moderation/photos.jsonl by default) go through the
moderation-photo service's code path the same way; an item names a photo beside the file and
may have it changed in code first (alive_tools/photo_cases.py). Their items and summary are
under "photos" in out/eval.json. Photo categories are the reason codes' labels (e.g. the
photo's text judged as self_harm counts under PHOTO_TEXT's findings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alive.blobs import LocalBlobStore
from alive.v1.events_pb2 import Job, Verdict
from alive_tools.photo_cases import make_case
from alive_tools.testing import StageHarness
from services.moderation.photo.settings import PhotoCheckpointSettings
from services.moderation.photo.stage import PhotoCheckpoint
from services.moderation.policy import load_policy
from services.moderation.prompt.settings import PromptCheckpointSettings
from services.moderation.prompt.stage import PromptCheckpoint

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "moderation"
DEFAULT_SET = DATA / "prompts.jsonl"
DEFAULT_PHOTOS = DATA / "photos.jsonl"


@dataclass(frozen=True)
class Judged:
    decision: str
    reason_codes: list[str]
    seconds: float


async def judge_all(prompts: list[str], settings: PromptCheckpointSettings) -> list[Judged]:
    with tempfile.TemporaryDirectory() as folder:
        harness = StageHarness(PromptCheckpoint(settings, LocalBlobStore(Path(folder))))
        jobs = [Job(job_id=f"eval-{i}", prompt=prompt) for i, prompt in enumerate(prompts)]
        return [await _judge(harness, job) for job in jobs]


async def judge_photos(photos: list[bytes]) -> list[Judged]:
    with tempfile.TemporaryDirectory() as folder:
        blobs = LocalBlobStore(Path(folder))
        async with StageHarness(PhotoCheckpoint(PhotoCheckpointSettings(), blobs)) as harness:
            jobs = [
                Job(job_id=f"eval-{i}", photo=blobs.put_bytes(f"eval/{i}.png", data, "image/png"))
                for i, data in enumerate(photos)
            ]
            return [await _judge(harness, job) for job in jobs]


async def _judge(harness: StageHarness, job: Job) -> Judged:
    """One job through the checkpoint, as the earlier stages would have passed it on."""
    started = time.perf_counter()
    out = await harness.send(harness.upstream(job))
    seconds = time.perf_counter() - started
    if out.vetoes:
        return Judged("block", list(out.vetoes[0].reason_codes), seconds)
    (status,) = out.statuses
    decision = "review" if status.verdict == Verdict.REVIEW else "allow"
    return Judged(decision, list(status.reason_codes), seconds)


def summarise(
    items: list[dict[str, str]], judged: list[Judged], labels: dict[str, str], version: str
) -> dict[str, Any]:
    harmful = [(i, j) for i, j in zip(items, judged, strict=True) if i["label"] == "block"]
    benign = [(i, j) for i, j in zip(items, judged, strict=True) if i["label"] == "allow"]
    categories = sorted({i["category"] for i, _ in harmful})
    per_category = {}
    for category in categories:
        truth = [j for i, j in harmful if i["category"] == category]
        flagged = [
            (i, j)
            for i, j in zip(items, judged, strict=True)
            if j.decision != "allow" and category in {labels.get(c) for c in j.reason_codes}
        ]
        correct = [i for i, _ in flagged if i["label"] == "block" and i["category"] == category]
        per_category[category] = {
            "items": len(truth),
            "recall": _ratio(sum(j.decision != "allow" for j in truth), len(truth)),
            "precision": _ratio(len(correct), len(flagged)),
        }
    latencies_ms = sorted(j.seconds * 1000 for j in judged)
    return {
        "policy_version": version,
        "items": len(items),
        "block_items": len(harmful),
        "allow_items": len(benign),
        "recall_block": _ratio(sum(j.decision == "block" for _, j in harmful), len(harmful)),
        "recall_caught": _ratio(sum(j.decision != "allow" for _, j in harmful), len(harmful)),
        "false_block_rate": _ratio(sum(j.decision == "block" for _, j in benign), len(benign)),
        "review_rate_on_allow": _ratio(sum(j.decision == "review" for _, j in benign), len(benign)),
        "per_category": per_category,
        "latency_ms": {
            "p50": round(statistics.median(latencies_ms), 3),
            "p95": round(latencies_ms[int(0.95 * (len(latencies_ms) - 1))], 3),
        },
    }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def read_items(path: Path, key: str = "prompt") -> list[dict[str, str]]:
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        item = json.loads(line)
        if not isinstance(item.get(key), str) or item.get("label") not in ("allow", "block"):
            raise SystemExit(f"{path}:{number}: needs a string {key!r} and 'label' allow|block")
        item.setdefault("category", "none")
        items.append(item)
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=Path, default=DEFAULT_SET)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--out", type=Path, default=Path("out/eval.json"))
    args = parser.parse_args(argv)
    items = read_items(args.prompts)
    settings = PromptCheckpointSettings()
    policy = load_policy(settings.policy_path)
    judged = asyncio.run(judge_all([i["prompt"] for i in items], settings))
    labels = {str(code): label for code, label in policy.labels().items()}
    summary = summarise(items, judged, labels, policy.version)
    photo_items = read_items(args.photos, key="photo")
    photos = [make_case(item, args.photos.parent / "photos") for item in photo_items]
    photo_judged = asyncio.run(judge_photos(photos))
    photo_labels = {**labels, "PHOTO_TEXT": "text", "PHOTO_BLANK": "quality"}
    photo_labels["PHOTO_TOO_SMALL"] = "quality"
    photo_summary = summarise(photo_items, photo_judged, photo_labels, policy.version)
    report = {
        "items": [{"decision": j.decision, "reason_codes": j.reason_codes} for j in judged],
        "summary": summary,
        "photos": {
            "items": [
                {"decision": j.decision, "reason_codes": j.reason_codes} for j in photo_judged
            ],
            "summary": photo_summary,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    json.dump({"prompts": summary, "photos": photo_summary}, sys.stdout, indent=2)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
