"""The review queue in a real browser (Debian's chromium driven by Playwright) on the real
embedded stack: a reviewer signs in, plays a held video in the page, rejects it with a
reason and the job ends VETOED; the next item is theirs (a second reviewer cannot decide
it), they approve it and it is PUBLISHED. A
screenshot of the queue page is saved to out/review-queue.png. Then user reports on the
published video: a severe one takes it off Stories (alive.unpublished) at once."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from alive.pipeline import PUBLISHED, UNPUBLISHED
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import JobState, PublishedVideo, Unpublished, Verdict
from alive_tools.client import AliveClient
from alive_tools.embedded.stack import REPO_ROOT, EmbeddedStack
from tests.support import SMALL_OUTPUT, photo_bytes, read_topic, wait_for

CHROMIUM = Path("/usr/bin/chromium")
OUT = REPO_ROOT / "out"
# A named public figure: the prompt checkpoint marks the job REVIEW (PROMPT_REAL_PERSON).
HELD_PROMPT = "taylor swift waves at the sea"
H264_AAC = 'video/mp4; codecs="avc1.42E01E, mp4a.40.2"'

pytestmark = pytest.mark.skipif(
    shutil.which(str(CHROMIUM)) is None, reason="needs Debian's chromium (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        yield launched
        launched.close()


def held_job(client: AliveClient, seed: int) -> str:
    """A READY job, published, that review holds for a person."""
    photo = photo_bytes(seed=seed)
    job_id = client.submit(photo, HELD_PROMPT, output=SMALL_OUTPUT).job_id
    assert wait_for(client, job_id, {JobState.READY}).state == JobState.READY
    client.publish(job_id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        history = client.get(job_id).history
        if any(e.stage == "review" and e.verdict == Verdict.REVIEW for e in history):
            return job_id
        time.sleep(0.2)
    raise AssertionError(f"review did not hold {job_id}: {client.get(job_id)}")


def topic_values(stack: EmbeddedStack, topic: str) -> list[bytes]:
    """The topic's records so far, read on a thread of its own (Playwright's sync API holds
    an event loop on this one)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        records = pool.submit(read_topic, stack.kafka_bootstrap, topic).result()
    return [r.value for r in records]


def signed_in(browser: Browser, stack: EmbeddedStack, reviewer: str) -> Page:
    passwords = json.loads(stack.reviewer_file.read_text())
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(stack.review_url)
    assert page.url.endswith("/login")
    page.fill("input[name=name]", reviewer)
    page.fill("input[name=password]", passwords[reviewer])
    page.click("button[type=submit]")
    page.wait_for_url(stack.review_url)
    return page


def test_reviewers_play_reject_and_approve_in_the_browser(
    stack: EmbeddedStack, client: AliveClient, browser: Browser
) -> None:
    rejected, approved = held_job(client, 1), held_job(client, 2)

    page = signed_in(browser, stack, "reviewer")
    page.reload()
    assert page.locator(f"a[href='/items/publish/{rejected}']").is_visible()
    assert page.locator(f"a[href='/items/publish/{approved}']").is_visible()
    assert "PROMPT_REAL_PERSON" in page.inner_text("#queue")
    OUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUT / "review-queue.png"), full_page=True)
    assert (OUT / "review-queue.png").stat().st_size > 0

    page.click(f"a[href='/items/publish/{rejected}']")
    page.wait_for_selector("#video")
    # The generator writes H.264 + AAC in MP4. Debian's chromium says it plays them (some
    # chromium builds leave H.264 out: checked here, not assumed; the video playing below
    # is the proof).
    can_play = "t => document.getElementById('video').canPlayType(t)"
    assert page.evaluate(can_play, H264_AAC) in ("probably", "maybe")
    page.evaluate(
        "() => { window.played = new Promise(r => document.getElementById('video')"
        ".addEventListener('playing', () => r(true), {once: true})); }"
    )
    page.keyboard.press("Space")  # the shortcut plays it
    assert page.evaluate("window.played") is True
    page.wait_for_function(
        "() => { const v = document.getElementById('video');"
        " return v.currentTime > 0 && !v.paused && v.error === null; }"
    )
    assert page.evaluate("document.getElementById('photo').naturalWidth") > 0
    assert page.inner_text("#prompt") == HELD_PROMPT
    assert "moderation-prompt" in page.inner_text("#checkpoints")

    page.select_option("#reject-reason", ReasonCode.PROMPT_REAL_PERSON)
    page.click("#reject")
    vetoed = wait_for(client, rejected, {JobState.VETOED, JobState.PUBLISHED})
    assert vetoed.state == JobState.VETOED
    assert list(vetoed.reason_codes) == [ReasonCode.REVIEW_REJECTED, ReasonCode.PROMPT_REAL_PERSON]

    # The reviewer is taken on to the next item, which is now theirs: a second reviewer
    # opening it cannot decide it.
    page.wait_for_url(f"{stack.review_url}items/publish/{approved}")
    other = signed_in(browser, stack, "reviewer2")
    other.goto(f"{stack.review_url}items/publish/{approved}")
    assert "claimed by reviewer" in other.inner_text("main")
    assert other.locator("#approve").count() == 0
    page.wait_for_selector("#approve")
    page.keyboard.press("a")  # the shortcut approves it
    published = wait_for(client, approved, {JobState.VETOED, JobState.PUBLISHED})
    assert published.state == JobState.PUBLISHED
    stories = [
        PublishedVideo.FromString(value) for value in topic_values(stack, PUBLISHED.default_name)
    ]
    (live,) = [v for v in stories if v.job_id == approved]
    assert live.ai_generated and live.provenance_state == "Trusted"
    assert live.review.scores["human_approved"] == 1.0

    # A severe report takes it off Stories at once; the reporter's name goes nowhere.
    with stack.client("someone-watching") as viewer:
        assert not viewer.report(approved, ReasonCode.REPORTED_SELF_HARM).duplicate
        assert viewer.report(approved, ReasonCode.REPORTED_SELF_HARM).duplicate
    deadline = time.monotonic() + 30
    gone: list[Unpublished] = []
    while not gone and time.monotonic() < deadline:
        gone = [
            u
            for value in topic_values(stack, UNPUBLISHED.default_name)
            if (u := Unpublished.FromString(value)).job_id == approved
        ]
    (off,) = gone
    assert list(off.reason_codes) == [ReasonCode.REPORTED_SELF_HARM]
    assert b"someone-watching" not in off.SerializeToString()
    page.goto(stack.review_url)
    assert page.locator(f"a[href='/items/report/{approved}']").is_visible()  # back to a person


def test_a_killed_review_web_app_comes_back_with_its_queue(
    stack: EmbeddedStack, client: AliveClient, browser: Browser
) -> None:
    """The review web app killed (SIGKILL) with an item in the queue and claimed: restarted,
    it rebuilds the queue from Kafka, the claim is gone with the process, and a reviewer
    decides the item."""
    held = held_job(client, 3)
    first = signed_in(browser, stack, "reviewer")
    first.goto(f"{stack.review_url}items/publish/{held}")
    first.wait_for_selector("#approve")  # claimed by reviewer
    stack.kill("review-web")
    stack.restart("review-web")
    other = signed_in(browser, stack, "reviewer2")  # sessions died with the process
    assert other.locator(f"a[href='/items/publish/{held}']").is_visible()
    other.goto(f"{stack.review_url}items/publish/{held}")
    other.click("#approve")
    assert wait_for(client, held, {JobState.VETOED, JobState.PUBLISHED}).state == JobState.PUBLISHED
    first.reload()
    assert first.url.endswith("/login")  # the old session is gone
