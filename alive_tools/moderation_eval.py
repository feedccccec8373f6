"""``make eval``: the prompt checkpoint measured on a labelled set of prompts.

Each prompt goes through the moderation-prompt service's own code path (its stage, through
the same event processor the runner uses, alive_tools.testing.StageHarness), so what is
measured is what the service decides. Input: JSON lines with "prompt", "label" (allow or
block) and "category" (tests/data/moderation/prompts.jsonl by default). Output: a summary on
stdout and out/eval.json: {"items": [{"decision": "allow|review|block", "reason_codes":
[...]}, ...] in input order, "summary": {...}}.

"review" means the job goes on, held for a person before it is published: it is counted as
caught in ``recall_caught`` and as not blocked in ``false_block_rate``.
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
from alive_tools.testing import StageHarness
from services.moderation.policy import load_policy
from services.moderation.prompt.settings import PromptCheckpointSettings
from services.moderation.prompt.stage import PromptCheckpoint

DEFAULT_SET = (
    Path(__file__).resolve().parents[1] / "tests" / "data" / "moderation" / "prompts.jsonl"
)


@dataclass(frozen=True)
class Judged:
    decision: str
    reason_codes: list[str]
    seconds: float


async def judge_all(prompts: list[str], settings: PromptCheckpointSettings) -> list[Judged]:
    with tempfile.TemporaryDirectory() as folder:
        harness = StageHarness(PromptCheckpoint(settings, LocalBlobStore(Path(folder))))
        judged = []
        for i, prompt in enumerate(prompts):
            started = time.perf_counter()
            out = await harness.send(harness.upstream(Job(job_id=f"eval-{i}", prompt=prompt)))
            seconds = time.perf_counter() - started
            if out.vetoes:
                judged.append(Judged("block", list(out.vetoes[0].reason_codes), seconds))
            else:
                (status,) = out.statuses
                decision = "review" if status.verdict == Verdict.REVIEW else "allow"
                judged.append(Judged(decision, list(status.reason_codes), seconds))
        return judged


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


def read_items(path: Path) -> list[dict[str, str]]:
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        item = json.loads(line)
        if not isinstance(item.get("prompt"), str) or item.get("label") not in ("allow", "block"):
            raise SystemExit(f"{path}:{number}: needs a string 'prompt' and 'label' allow|block")
        item.setdefault("category", "none")
        items.append(item)
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=Path, default=DEFAULT_SET)
    parser.add_argument("--out", type=Path, default=Path("out/eval.json"))
    args = parser.parse_args(argv)
    items = read_items(args.prompts)
    settings = PromptCheckpointSettings()
    policy = load_policy(settings.policy_path)
    judged = asyncio.run(judge_all([i["prompt"] for i in items], settings))
    labels = {str(code): label for code, label in policy.labels().items()}
    summary = summarise(items, judged, labels, policy.version)
    report = {
        "items": [{"decision": j.decision, "reason_codes": j.reason_codes} for j in judged],
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    json.dump(summary, sys.stdout, indent=2)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
