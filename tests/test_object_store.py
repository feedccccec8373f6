"""The whole pipeline on an object store (ALIVE_BLOB_URL=s3://...; a real S3 API, moto's
server): a job goes through every stage and is published, every blob and ledger entry is an
object under the stack's prefix, and nothing of the job is kept on local disk."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alive.provenance import verify_video
from alive.v1.events_pb2 import JobState
from alive_tools.embedded.stack import EmbeddedStack, StackError
from tests.support import (
    NO_REVIEW_SAMPLE,
    SMALL_OUTPUT,
    MotoS3,
    looks_encrypted,
    path_of,
    wait_for,
)


@pytest.fixture(scope="module")
def s3_stack(s3: MotoS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in s3.environment.items():
            env.setenv(name, value)
        env.setenv("ALIVE_BLOB_URL", f"s3://{s3.BUCKET}/stacks")
        running = EmbeddedStack(
            tmp_path_factory.mktemp("s3-stack"), shutdown_grace_s=5, extra_env=NO_REVIEW_SAMPLE
        )
        with running:
            yield running


def test_a_job_runs_and_publishes_with_every_blob_in_the_object_store(
    s3_stack: EmbeddedStack, s3: MotoS3, small_photo: bytes
) -> None:
    prefix = s3_stack.blob_url.removeprefix(f"s3://{s3.BUCKET}/")
    assert prefix.startswith("stacks/run-")  # a fresh prefix per start
    with s3_stack.client() as client:
        job_id = client.submit(small_photo, "waves at dusk", output=SMALL_OUTPUT).job_id
        ready = wait_for(client, job_id, {JobState.READY})
        client.publish(job_id)
        ended = {JobState.PUBLISHED, JobState.VETOED, JobState.FAILED}
        published = wait_for(client, job_id, ended)
    assert path_of(published)[-1] == "PUBLISHED", path_of(published)
    assert ready.video.uri.startswith(s3_stack.blob_url + "/")

    listing = s3.client().list_objects_v2(Bucket=s3.BUCKET, Prefix=prefix + "/")
    keys = [o["Key"].removeprefix(prefix + "/") for o in listing.get("Contents", [])]
    assert {k.split("/")[0] for k in keys} >= {"photos", "videos", "ledger"}
    ledger_stages = {k.split("/")[1] for k in keys if k.startswith("ledger/")}
    media_and_ledger = ("photos/", "videos/", "ledger/")  # (retention markers come and go)
    for key in (k for k in keys if job_id in k and k.startswith(media_and_ledger)):
        body = s3.client().get_object(Bucket=s3.BUCKET, Key=f"{prefix}/{key}")["Body"].read()
        assert looks_encrypted(body), key  # ciphertext at rest: no image or video signature
    assert {"ingest", "generator", "provenance", "moderation-video", "review"} <= ledger_stages

    with pytest.raises(StackError):
        s3_stack.blob_root  # noqa: B018 (the stack has no local blob folder)
    assert not (s3_stack.workdir / "blobs").exists()
    with s3_stack.blob_store().local_copy(ready.video) as video:
        check = verify_video(video, s3_stack.trust_anchor.read_bytes())
    assert check.state == "Trusted", check.failure_codes
