"""The local blob store and the stage ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from alive.blobs import BlobError, LocalBlobStore, StageLedger
from alive.v1.events_pb2 import BlobRef


def test_round_trip_under_a_root_with_spaces(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blob root")
    ref = store.put_bytes("videos/job 1/signed.mp4", b"video", "video/mp4")
    assert "%20" in ref.uri  # a real file:// URI
    assert store.key_for(ref.uri) == "videos/job 1/signed.mp4"
    assert store.get_bytes(ref) == b"video"
    assert store.local_path(ref) == tmp_path / "blob root" / "videos" / "job 1" / "signed.mp4"


def test_outputs_are_write_once(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    first = store.put_bytes("videos/j/signed.mp4", b"first signature", "video/mp4")
    again = store.put_bytes("videos/j/signed.mp4", b"second signature", "video/mp4")
    assert again == first
    assert store.get_bytes(again) == b"first signature"
    assert not [p for p in tmp_path.rglob(".tmp-*")]


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


def test_ledger_entries_per_stage_and_job(tmp_path: Path) -> None:
    ledger = StageLedger(LocalBlobStore(tmp_path))
    assert ledger.get("audio", "job-1") is None
    ledger.put("audio", "job-1", b"outcome")
    assert ledger.get("audio", "job-1") == b"outcome"
    assert ledger.get("generator", "job-1") is None
    for bad in ("", "../x", ".hidden", "a/b"):
        assert not StageLedger.valid_job_id(bad)
