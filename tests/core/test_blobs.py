"""The local blob store and the stage ledger."""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from alive.blobs import BlobError, LocalBlobStore, StageLedger, output_key
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import BlobRef


def test_round_trip_under_a_root_with_spaces(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blob root")
    ref = store.put_bytes("videos/job 1/signed.mp4", b"video", "video/mp4")
    assert "%20" in ref.uri  # a real file:// URI
    assert store.key_for(ref.uri) == "videos/job 1/signed.mp4"
    assert store.get_bytes(ref) == b"video"
    assert store.local_path(ref) == tmp_path / "blob root" / "videos" / "job 1" / "signed.mp4"


def test_outputs_are_created_never_taken_over(tmp_path: Path) -> None:
    """Whatever is already at a key (a planted file, a link) is refused, not read as the
    write's result, and stays as it was."""
    store = LocalBlobStore(tmp_path)
    (tmp_path / "videos" / "j").mkdir(parents=True)
    (tmp_path / "videos" / "j" / "planted.mp4").write_bytes(b"planted")
    (tmp_path / "videos" / "j" / "link.mp4").symlink_to(tmp_path / "elsewhere")
    for name in ("planted.mp4", "link.mp4"):
        with pytest.raises(BlobError) as exists:
            store.put_bytes(f"videos/j/{name}", b"mine", "video/mp4")
        assert exists.value.reason_code == ReasonCode.BLOB_EXISTS
    assert (tmp_path / "videos" / "j" / "planted.mp4").read_bytes() == b"planted"
    assert not (tmp_path / "elsewhere").exists()
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_output_keys_are_fresh_and_unguessable() -> None:
    keys = {output_key("videos/j/signed", ".mp4") for _ in range(100)}
    assert len(keys) == 100
    assert all(re.fullmatch(r"videos/j/signed-[0-9a-f]{32}\.mp4", k) for k in keys)


def test_refs_outside_the_store_are_refused(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store")
    (tmp_path / "secret").write_bytes(b"x")
    for uri in (
        (tmp_path / "secret").as_uri(),
        (tmp_path / "store").as_uri() + "/../secret",
        "s3://bucket/key",
        "file://otherhost" + str(tmp_path / "store" / "a"),
    ):
        assert store.key_for(uri) is None, uri
        with pytest.raises(BlobError):
            store.get_bytes(BlobRef(uri=uri))
    with pytest.raises(BlobError):
        store.put_bytes("../escape", b"x", "text/plain")


def test_a_changed_blob_fails_its_digest(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    ref = store.put_bytes("photos/p.png", b"photo", "image/png")
    store.local_path(ref).write_bytes(b"edited")
    with pytest.raises(BlobError, match="sha256"):
        store.get_bytes(ref)


def test_ledger_entries_per_stage_and_job_are_decided_once(tmp_path: Path) -> None:
    ledger = StageLedger(LocalBlobStore(tmp_path))
    assert ledger.get("audio", "job-1") is None
    assert ledger.decide("audio", "job-1", b"first") == b"first"
    assert ledger.decide("audio", "job-1", b"second") == b"first"  # the loser reads the winner
    assert ledger.get("audio", "job-1") == b"first"
    assert ledger.get("generator", "job-1") is None
    assert not ledger.was_sent("audio", "job-1")
    ledger.mark_sent("audio", "job-1")
    ledger.mark_sent("audio", "job-1")  # a second replica marking it too: fine
    assert ledger.was_sent("audio", "job-1") and not ledger.was_sent("generator", "job-1")
    ledger.mark_cancelled("job-1")
    ledger.mark_cancelled("job-1")
    assert ledger.is_cancelled("job-1") and not ledger.is_cancelled("job-2")
    for bad in ("", "../x", ".hidden", "a/b"):
        assert not StageLedger.valid_job_id(bad)


def test_of_racing_creators_of_a_key_exactly_one_wins(tmp_path: Path) -> None:
    # Separate store objects over one folder: replicas sharing a volume.
    stores = [LocalBlobStore(tmp_path) for _ in range(8)]
    barrier = threading.Barrier(len(stores))

    def create(replica: int) -> bool:
        barrier.wait()
        return stores[replica].create_key("ledger/audio/job-1", f"replica {replica}".encode())

    with ThreadPoolExecutor(len(stores)) as pool:
        won = list(pool.map(create, range(len(stores))))
    assert won.count(True) == 1
    assert stores[0].read_key("ledger/audio/job-1") == f"replica {won.index(True)}".encode()
    assert [p.name for p in (tmp_path / "ledger" / "audio").iterdir()] == ["job-1"]  # no temps


def test_a_link_planted_where_a_key_is_created_is_neither_followed_nor_replaced(
    tmp_path: Path,
) -> None:
    store = LocalBlobStore(tmp_path / "store")
    (store.root / "ledger" / "audio").mkdir(parents=True)
    (store.root / "ledger" / "audio" / "job-1").symlink_to(tmp_path / "target")
    assert not store.create_key("ledger/audio/job-1", b"outcome")
    assert not (tmp_path / "target").exists()


# Nothing in the store is trusted for being there.


def test_each_refusal_has_its_own_code(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store", max_bytes=10)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"secret")
    (store.root / "uploads").mkdir()
    (store.root / "uploads" / "link").symlink_to(outside)
    (store.root / "linked").symlink_to(tmp_path, target_is_directory=True)
    (store.root / "uploads" / "linked").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(store.root / "uploads" / "fifo")
    big = store.put_bytes("uploads/big", b"x" * 11, "application/octet-stream")
    small = store.put_bytes("uploads/small", b"small", "application/octet-stream")
    cases = {
        "uploads/missing": ReasonCode.BLOB_NOT_FOUND,
        "uploads/link": ReasonCode.BLOB_NOT_REGULAR_FILE,
        "linked/outside.jpg": ReasonCode.BLOB_NOT_REGULAR_FILE,
        "uploads/linked/outside.jpg": ReasonCode.BLOB_NOT_REGULAR_FILE,  # a link further down
        "uploads/fifo": ReasonCode.BLOB_NOT_REGULAR_FILE,  # and no wait for a writer
        "uploads/big": ReasonCode.BLOB_TOO_LARGE,
    }
    for key, code in cases.items():
        ref = BlobRef(uri=(store.root / key).as_uri())
        with pytest.raises(BlobError) as refused:
            store.get_bytes(ref)
        assert refused.value.reason_code == code, key
        with pytest.raises(BlobError):
            store.local_path(ref)
    assert big.size_bytes == 11
    forged = BlobRef(uri=small.uri, sha256="0" * 64)
    with pytest.raises(BlobError) as mismatch:
        store.local_path(forged)
    assert mismatch.value.reason_code == ReasonCode.BLOB_CHECKSUM_MISMATCH
    with pytest.raises(BlobError) as outside_ref:
        store.get_bytes(BlobRef(uri=outside.as_uri()))
    assert outside_ref.value.reason_code == ReasonCode.BLOB_OUTSIDE_STORE


def test_a_link_planted_in_the_ledger_is_not_followed(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store")
    (tmp_path / "elsewhere").write_bytes(b"forged outcome")
    (store.root / "ledger" / "audio").mkdir(parents=True)
    (store.root / "ledger" / "audio" / "job-1").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(BlobError) as refused:
        StageLedger(store).get("audio", "job-1")
    assert refused.value.reason_code == ReasonCode.BLOB_NOT_REGULAR_FILE


def test_put_file_copies_in_chunks_and_creates_never_takes_over(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    source = tmp_path / "video.mp4"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 7))  # several copy chunks
    ref = store.put_file("videos/j/signed-1.mp4", source, "video/mp4")
    assert store.get_bytes(ref) == source.read_bytes() and ref.size_bytes == 3 * 1024 * 1024 + 7
    with pytest.raises(BlobError) as exists:
        store.put_file("videos/j/signed-1.mp4", tmp_path / "video.mp4", "video/mp4")
    assert exists.value.reason_code == ReasonCode.BLOB_EXISTS
    assert not list((tmp_path / "blobs").rglob(".tmp-*"))


def test_list_and_delete_see_regular_files_only(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.put_bytes("videos/j1/a.mp4", b"a", "video/mp4")
    store.put_bytes("videos/j10/b.mp4", b"b", "video/mp4")
    (tmp_path / "videos" / "j1" / "link.mp4").symlink_to(tmp_path / "videos" / "j10" / "b.mp4")
    (tmp_path / "videos" / "j1" / ".tmp-partial").write_bytes(b"half")
    assert [b.key for b in store.list_keys("videos/j1/")] == ["videos/j1/a.mp4"]
    assert store.delete_key("videos/j1/link.mp4") is True  # the link, not its target
    assert store.read_key("videos/j10/b.mp4") == b"b"
    assert store.delete_key("videos/j1/a.mp4") is True
    assert store.delete_key("videos/j1/a.mp4") is False
