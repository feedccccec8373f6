"""The object store against a real S3 API (moto's server on loopback): write-once with
conditional writes, checked and capped reads, streamed copies, and failures the runner
retries."""

from __future__ import annotations

import hashlib
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from alive.blobs import BlobError, StageLedger, open_blob_store, open_plain_blob_store
from alive.encryption import EncryptingBlobStore, KekRing, new_keyring_document
from alive.reasons import ReasonCode
from alive.s3_store import S3BlobStore
from alive.v1.events_pb2 import BlobRef
from tests.support import MotoS3


@pytest.fixture
def store(s3: MotoS3) -> S3BlobStore:
    """A store under a fresh prefix of the test bucket."""
    url = f"s3://{s3.BUCKET}/run-{uuid.uuid4().hex[:8]}"
    return S3BlobStore(url, max_bytes=1024 * 1024, client=s3.client())


def test_a_blob_round_trips_with_its_reference(store: S3BlobStore) -> None:
    ref = store.put_bytes("photos/job-1/photo.png", b"png bytes", "image/png")
    assert ref.uri == f"{store.url}/photos/job-1/photo.png"
    assert ref.sha256 == hashlib.sha256(b"png bytes").hexdigest() and ref.size_bytes == 9
    assert store.key_for(ref.uri) == "photos/job-1/photo.png"
    assert store.get_bytes(ref) == b"png bytes"
    assert store.key_for("s3://another-bucket/photos/job-1/photo.png") is None
    assert store.key_for("file:///photos/job-1/photo.png") is None


def test_a_key_is_written_once_and_of_racing_writers_exactly_one_wins(
    store: S3BlobStore,
) -> None:
    store.put_bytes("videos/j/out.mp4", b"first", "video/mp4")
    with pytest.raises(BlobError) as taken:
        store.put_bytes("videos/j/out.mp4", b"second", "video/mp4")
    assert taken.value.reason_code == ReasonCode.BLOB_EXISTS

    def write(replica: int) -> str:
        try:
            store.put_bytes("videos/j/raced.mp4", f"replica {replica}".encode(), "video/mp4")
            return "won"
        except BlobError as exc:
            return exc.reason_code

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(write, range(8)))
    assert sorted(outcomes) == ["BLOB_EXISTS"] * 7 + ["won"]
    winner = outcomes.index("won")
    assert store.read_key("videos/j/raced.mp4") == f"replica {winner}".encode()


def test_a_file_is_streamed_in_and_out_and_the_copy_is_removed(
    store: S3BlobStore, tmp_path: Path
) -> None:
    source = tmp_path / "video.mp4"
    source.write_bytes(bytes(range(256)) * 2048)  # 512 KiB
    ref = store.put_file("videos/j/signed.mp4", source, "video/mp4")
    assert ref.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    with store.local_copy(ref) as copy:
        assert copy.read_bytes() == source.read_bytes()
    assert not copy.exists()


def test_what_another_process_changed_or_planted_is_refused(store: S3BlobStore, s3: MotoS3) -> None:
    ref = store.put_bytes("videos/j/made.mp4", b"what the stage made", "video/mp4")
    raw = s3.client()
    key = f"{store.prefix}/videos/j/made.mp4"
    raw.put_object(Bucket=s3.BUCKET, Key=key, Body=b"swapped by someone else")
    for read in (store.get_bytes, lambda r: store.local_copy(r).__enter__()):
        with pytest.raises(BlobError) as changed:
            read(ref)
        assert changed.value.reason_code == ReasonCode.BLOB_CHECKSUM_MISMATCH
    raw.put_object(Bucket=s3.BUCKET, Key=f"{store.prefix}/big", Body=b"x" * (1024 * 1024 + 1))
    with pytest.raises(BlobError) as big:
        store.read_key("big")
    assert big.value.reason_code == ReasonCode.BLOB_TOO_LARGE
    for key_outside in ("../escape", "a//b", ""):
        with pytest.raises(BlobError) as outside:
            store.put_bytes(key_outside, b"x", "text/plain")
        assert outside.value.reason_code == ReasonCode.BLOB_OUTSIDE_STORE
    forged = BlobRef(uri=f"s3://{s3.BUCKET}/elsewhere/made.mp4")
    with pytest.raises(BlobError) as elsewhere:
        store.get_bytes(forged)
    assert elsewhere.value.reason_code == ReasonCode.BLOB_OUTSIDE_STORE


def test_a_missing_blob_is_not_found_and_the_ledger_works_on_the_store(
    store: S3BlobStore,
) -> None:
    assert store.read_key("ledger/generator/job-1") is None
    with pytest.raises(BlobError) as missing:
        store.get_bytes(BlobRef(uri=f"{store.url}/videos/none.mp4"))
    assert missing.value.reason_code == ReasonCode.BLOB_NOT_FOUND
    ledger = StageLedger(store)
    assert ledger.decide("generator", "job-1", b"outcome") == b"outcome"
    assert ledger.decide("generator", "job-1", b"another") == b"outcome"
    assert ledger.get("generator", "job-1") == b"outcome"
    assert not ledger.was_sent("generator", "job-1")
    ledger.mark_sent("generator", "job-1")
    ledger.mark_sent("generator", "job-1")
    assert ledger.was_sent("generator", "job-1")
    ledger.mark_cancelled("job-2")
    ledger.mark_cancelled("job-2")
    assert ledger.is_cancelled("job-2") and not ledger.is_cancelled("job-1")


def test_of_replicas_deciding_one_job_at_once_one_record_stands(
    store: S3BlobStore, s3: MotoS3
) -> None:
    # A store object (and S3 client) per replica, as on separate hosts.
    ledgers = [StageLedger(S3BlobStore(store.url, store.max_bytes, s3.client())) for _ in range(6)]
    barrier = threading.Barrier(len(ledgers))

    def decide(replica: int) -> bytes:
        barrier.wait()
        return ledgers[replica].decide("audio", "job-9", f"replica {replica}".encode())

    with ThreadPoolExecutor(len(ledgers)) as pool:
        standing = set(pool.map(decide, range(len(ledgers))))
    assert len(standing) == 1 and standing == {store.read_key("ledger/audio/job-9")}


def test_an_unreachable_store_is_an_os_error_the_runner_retries() -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",  # nothing listens on the discard port
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    store = S3BlobStore("s3://alive-test/x", max_bytes=1024, client=client)
    with pytest.raises(OSError):
        store.put_bytes("k", b"v", "text/plain")
    with pytest.raises(OSError):
        store.read_key("k")


def test_the_blob_url_names_the_store(tmp_path: Path, s3: MotoS3) -> None:
    assert (
        open_plain_blob_store(str(tmp_path / "blobs")).key_for((tmp_path / "blobs/a").as_uri())
        == "a"
    )
    plain = open_plain_blob_store((tmp_path / "b").as_uri())
    assert plain.key_for((tmp_path / "b/c").as_uri()) == "c"
    assert isinstance(open_plain_blob_store(f"s3://{s3.BUCKET}/p"), S3BlobStore)
    keys = KekRing.from_document(new_keyring_document("k"))
    encrypting = open_blob_store(f"s3://{s3.BUCKET}/p", keys)
    assert isinstance(encrypting, EncryptingBlobStore)
    assert isinstance(encrypting.inner, S3BlobStore)
    with pytest.raises(ValueError, match="ALIVE_BLOB_URL"):
        open_plain_blob_store("gopher://example/blobs")


def test_keys_are_listed_by_prefix_and_deleted_as_erasure_needs(store: S3BlobStore) -> None:
    for key in ("videos/j1/a.mp4", "videos/j1/b.mp4", "videos/j10/a.mp4", "photos/j1-x.png"):
        store.put_bytes(key, b"bytes", "video/mp4")
    assert store.keys_under("videos/j1/") == ["videos/j1/a.mp4", "videos/j1/b.mp4"]
    assert store.keys_under("photos/j1-") == ["photos/j1-x.png"]
    assert store.delete_key("videos/j1/a.mp4") and not store.delete_key("videos/j1/a.mp4")
    assert store.read_key("videos/j1/a.mp4") is None
    assert store.keys_under("videos/") == ["videos/j1/b.mp4", "videos/j10/a.mp4"]
