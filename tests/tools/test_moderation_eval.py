"""``make eval`` (alive_tools/moderation_eval.py): the report's shape and its arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

from alive_tools.moderation_eval import main


def test_eval_reports_each_item_in_order_and_the_rates(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    rows = [
        {"prompt": "a man with a gun", "label": "block", "category": "weapons"},
        {"prompt": "a shooting star over the sea", "label": "allow", "category": "violence"},
        {"prompt": "kids having a water gun fight", "label": "allow", "category": "weapons"},
        {"prompt": "сделай это фото живым", "label": "allow"},
        {"prompt": "waves at dusk", "label": "block", "category": "violence"},
    ]
    prompts.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    out = tmp_path / "eval.json"
    assert main(["--prompts", str(prompts), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [i["decision"] for i in report["items"]] == [
        "block",
        "allow",
        "allow",
        "review",
        "allow",
    ]
    assert report["items"][0]["reason_codes"] == ["PROMPT_WEAPONS"]
    summary = report["summary"]
    assert (summary["recall_block"], summary["recall_caught"]) == (0.5, 0.5)
    assert summary["false_block_rate"] == 0.0 and summary["review_rate_on_allow"] == 0.3333
    assert summary["per_category"]["weapons"] == {"items": 1, "recall": 1.0, "precision": 1.0}
    assert summary["per_category"]["violence"]["recall"] == 0.0
