"""Erasure in the core: a job's or a creator's blobs, ledger entries and index entries are
deleted, nothing of anyone else's is, the mark stays, and the receipt counts what went."""

from __future__ import annotations

from pathlib import Path

import pytest

from alive.blobs import LocalBlobStore, StageLedger, output_key
from alive.erasure import (
    ErasedJob,
    Eraser,
    ErasureStep,
    Receipt,
    creator_job_ids,
    delete_job_outputs,
    indexed_job,
    job_data_steps,
    record_job,
)
from alive.jobs import (
    dead_letter_prefix,
    photo_prefix,
    prompt_prefix,
    publish_log_key,
    upload_area,
    video_prefix,
)


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def make_job(blobs: LocalBlobStore, job_id: str, creator: str, request: str) -> ErasedJob:
    """Everything the pipeline keeps about a job, as its stages would have written it."""
    job = ErasedJob(job_id, creator, request)
    record_job(blobs, job)
    blobs.put_bytes(output_key(upload_area(creator, request) + "photo", ""), b"raw", "x")
    blobs.put_bytes(output_key(photo_prefix(job_id), ".png"), b"png", "image/png")
    blobs.put_bytes(output_key(prompt_prefix(job_id), ".txt"), b"a prompt", "text/plain")
    for step in ("generated", "scored", "signed"):
        blobs.put_bytes(output_key(video_prefix(job_id, step), ".mp4"), b"mp4", "video/mp4")
    blobs.put_bytes(output_key(dead_letter_prefix(job_id) + "audio-t-0-1", ""), b"job", "x")
    ledger = StageLedger(blobs)
    for stage in ("ingest", "moderation-photo", "review"):
        ledger.decide(stage, job_id, b"record")
    blobs.write_key(f"ledger/reports/{job_id}/r1", b"")
    blobs.write_key(f"retention/{job_id}/sources.1000", b"")  # the retention sweeper's
    return job


def keys_naming(blobs: LocalBlobStore, text: str) -> list[str]:
    return [k for k in blobs.keys_under("") if text in k]


async def test_erasing_a_job_deletes_its_every_blob_and_record_and_keeps_the_mark(
    blobs: LocalBlobStore,
) -> None:
    job = make_job(blobs, "job-a", "alice", "r1")
    other = make_job(blobs, "job-b", "alice", "r2")
    before = set(blobs.keys_under(""))
    receipt = await Eraser(blobs, job_data_steps(blobs)).erase_jobs([job])

    assert keys_naming(blobs, "job-a") == ["ledger/erased/job-a"]
    assert not blobs.keys_under(upload_area("alice", "r1"))
    assert StageLedger(blobs).is_erased("job-a") and not StageLedger(blobs).is_erased("job-b")
    # Everything of the other job is where it was.
    assert {k for k in before if other.job_id in k or "/r2/" in k} <= set(blobs.keys_under(""))
    assert creator_job_ids(blobs, "alice") == ["job-b"]
    assert receipt.job_ids == ["job-a"]
    assert receipt.deleted == {
        "blobs.photos": 1,
        "blobs.prompts": 1,
        "blobs.videos": 3,
        "blobs.dead_letters": 1,
        "blobs.uploads": 1,
        "ledger.entries": 4,
        "retention.markers": 1,
        "index": 2,
    }
    assert receipt.steps == ["mark", "blobs", "ledger", "index"]
    again = await Eraser(blobs, job_data_steps(blobs)).erase_jobs([job])
    assert sum(again.deleted.values()) == 0  # asked twice: nothing more to delete


async def test_erasing_a_creator_deletes_every_job_its_uploads_and_publish_log(
    blobs: LocalBlobStore,
) -> None:
    for n in range(3):
        make_job(blobs, f"bob-{n}", "bob", f"r{n}")
    make_job(blobs, "carol-0", "carol", "r0")
    blobs.put_bytes(upload_area("bob", "never-a-job") + "photo-x", b"raw", "x")
    blobs.write_key(publish_log_key("bob"), b"{}")
    blobs.write_key(publish_log_key("carol"), b"{}")
    not_indexed = ErasedJob("bob-late", "bob", "r9")  # submitted, not through ingest yet

    receipt = await Eraser(blobs, job_data_steps(blobs)).erase_creator("bob", [not_indexed])

    assert sorted(receipt.job_ids) == ["bob-0", "bob-1", "bob-2", "bob-late"]
    left = blobs.keys_under("")
    assert not [k for k in left if "bob" in k and not k.startswith("ledger/erased/")]
    assert publish_log_key("carol") in left and keys_naming(blobs, "carol-0")
    assert creator_job_ids(blobs, "carol") == ["carol-0"]
    assert receipt.deleted["blobs.uploads"] == 4 and receipt.deleted["review.publish_log"] == 1


async def test_a_step_of_another_kind_runs_in_its_place_for_every_job(
    blobs: LocalBlobStore,
) -> None:
    seen: list[tuple[str, bool]] = []

    async def destroy_key(job: ErasedJob, receipt: Receipt) -> None:
        # It runs after the mark, before the index goes.
        seen.append((job.job_id, StageLedger(blobs).is_erased(job.job_id)))
        assert indexed_job(blobs, job.job_id) is not None
        receipt.count("keys", 1)

    steps = [*job_data_steps(blobs), ErasureStep("keys", destroy_key)]
    make_job(blobs, "d-1", "dave", "r1")
    make_job(blobs, "d-2", "dave", "r2")
    receipt = await Eraser(blobs, steps).erase_creator("dave")
    assert seen == [("d-1", True), ("d-2", True)]
    assert receipt.deleted["keys"] == 2 and "keys" in receipt.steps


def test_outputs_made_after_an_erasure_are_deleted_by_job(blobs: LocalBlobStore) -> None:
    make_job(blobs, "e-1", "erin", "r1")
    make_job(blobs, "e-10", "erin", "r10")  # a job id that starts like the other
    deleted = delete_job_outputs(blobs, "e-1")
    assert deleted["blobs.videos"] == 3 and deleted["blobs.photos"] == 1
    assert keys_naming(blobs, "photos/e-10/")


def test_the_local_store_lists_by_prefix_and_deletes_without_following_links(
    blobs: LocalBlobStore, tmp_path: Path
) -> None:
    blobs.write_key("a/b/one", b"1")
    blobs.write_key("a/b2", b"2")
    blobs.write_key("c", b"3")
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    (blobs.root / "a" / "link").symlink_to(outside)
    assert blobs.keys_under("a/b") == ["a/b/one", "a/b2"]
    assert blobs.keys_under("a/") == ["a/b/one", "a/b2"]  # a link is not a blob
    assert blobs.keys_under("nothing/") == []
    assert blobs.delete_key("a/link") and outside.read_bytes() == b"keep"
    assert blobs.delete_key("c") and not blobs.delete_key("c")
