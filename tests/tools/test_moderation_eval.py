"""``make eval`` (alive_tools/moderation_eval.py): the report's shape and its arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

from alive_tools.moderation_eval import main

PHOTOS = Path(__file__).parents[1] / "data" / "moderation" / "photos"


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
    photos = tmp_path / "photos.jsonl"
    (tmp_path / "photos").symlink_to(PHOTOS)
    cases = [
        {"photo": "chelsea.jpg", "label": "allow"},
        {"photo": "chelsea.jpg", "make": "text", "text": "KILL YOURSELF", "label": "block"},
        {"photo": "coffee.jpg", "make": "flat", "label": "allow"},  # labelled wrong on purpose
    ]
    photos.write_text("\n".join(json.dumps(c) for c in cases) + "\n")
    args = ["--prompts", str(prompts), "--photos", str(photos), "--out", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert [i["decision"] for i in report["items"]] == [
        "block",
        "allow",
        "allow",
        "review",
        "allow",
    ]
    assert report["items"][0]["reason_codes"][0] == "PROMPT_WEAPONS"  # its term, first
    summary = report["summary"]
    assert (summary["recall_block"], summary["recall_caught"]) == (0.5, 0.5)
    assert summary["false_block_rate"] == 0.0 and summary["review_rate_on_allow"] == 0.3333
    assert summary["per_category"]["weapons"] == {"items": 1, "recall": 1.0, "precision": 1.0}
    assert summary["per_category"]["violence"]["recall"] == 0.0
    photo_report = report["photos"]
    assert [i["decision"] for i in photo_report["items"]] == ["allow", "block", "block"]
    assert photo_report["items"][1]["reason_codes"] == ["PHOTO_TEXT"]
    assert photo_report["summary"]["recall_block"] == 1.0
    assert photo_report["summary"]["false_block_rate"] == 0.5
