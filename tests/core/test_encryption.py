"""Encryption at rest (alive/encryption.py), on the local store and on a real S3 API (moto's
server on loopback): what lies in the store is ciphertext, it reads back checked, a changed
or moved blob is refused, rotation keeps old blobs readable, a destroyed job key makes a
job's blobs unreadable for good."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from alive.blobs import (
    BlobError,
    BlobStore,
    LocalBlobStore,
    StageLedger,
    open_blob_store,
    open_configured_blob_store,
)
from alive.encryption import (
    MAGIC,
    SEGMENT_BYTES,
    EncryptingBlobStore,
    KekRing,
    KeyEncryptionKey,
    LocalKek,
    new_keyring_document,
)
from alive.reasons import ReasonCode
from alive.s3_store import S3BlobStore, ServerSideEncryption
from alive.settings import ServiceSettings
from alive.v1.events_pb2 import BlobRef
from tests.support import MotoS3, looks_encrypted

GPS_PLACE = "GPS 52.5163N 13.3777E"  # written into the test photo's EXIF


def exif_jpeg() -> bytes:
    """A JPEG whose EXIF names a camera, a place and a person: what a phone uploads."""
    image = Image.new("RGB", (64, 48), (200, 120, 40))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x010E] = GPS_PLACE  # ImageDescription
    exif[0x013B] = "Jane Creator"  # Artist
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


def mp4_like(size: int) -> bytes:
    """Bytes that begin as an MP4 file does (an ``ftyp`` box), then random: a video as far as
    a signature scan of the store is concerned, bigger than one segment."""
    box = (24).to_bytes(4, "big") + b"ftypisom" + b"\x00\x00\x02\x00isomiso2"
    return box + os.urandom(size - len(box))


def carries_no_signature(raw: bytes) -> bool:
    """Ciphertext, without the photo's metadata in the clear either."""
    personal = (b"PhoneMaker", GPS_PLACE.encode())
    return looks_encrypted(raw) and not any(s in raw for s in personal)


def ring(*ids: str, current: str | None = None) -> KekRing:
    keys = {i: base64.b64encode(os.urandom(32)).decode() for i in ids}
    return KekRing.from_document({"current": current or ids[-1], "keys": keys})


@pytest.fixture(params=["local", "s3"])
def inner(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """The store that holds the bytes: a folder, or a fresh prefix of the test bucket (with
    server-side encryption asked for as well)."""
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    s3: MotoS3 = request.getfixturevalue("s3")
    url = f"s3://{s3.BUCKET}/enc-{uuid.uuid4().hex[:8]}"
    return S3BlobStore(url, 64 * 1024 * 1024, s3.client(), ServerSideEncryption("AES256"))


@pytest.fixture
def keys() -> KekRing:
    return ring("k1")


@pytest.fixture
def store(inner: BlobStore, keys: KekRing) -> EncryptingBlobStore:
    return EncryptingBlobStore(inner, keys, max_bytes=16 * 1024 * 1024)


def raw(inner: BlobStore, key: str) -> bytes:
    data = inner.read_key(key)
    assert data is not None
    return data


def test_what_lies_in_the_store_is_ciphertext_and_reads_back_checked(
    store: EncryptingBlobStore, inner: BlobStore, tmp_path: Path
) -> None:
    photo, png, video = exif_jpeg(), png_bytes(), mp4_like(3 * SEGMENT_BYTES + 123)
    assert all(s in photo for s in (b"\xff\xd8\xff", b"Exif", GPS_PLACE.encode()))
    upload = store.put_bytes("uploads/c1/r1/photo-1", photo, "image/jpeg")
    cleaned = store.put_bytes("photos/job1/photo-1.png", png, "image/png")
    source = tmp_path / "signed.mp4"
    source.write_bytes(video)
    signed = store.put_file("videos/job1/signed-1.mp4", source, "video/mp4")
    store.write_key("ledger/generator/job1", b"the job record")

    for ref, data in ((upload, photo), (cleaned, png), (signed, video)):
        key = store.key_for(ref.uri)
        assert key is not None
        assert carries_no_signature(raw(inner, key)), key
        # The reference names the plaintext: its sha256 and size, checked on every read.
        assert ref.sha256 == hashlib.sha256(data).hexdigest() and ref.size_bytes == len(data)
        assert store.get_bytes(ref) == data
        with store.local_copy(ref) as copy:
            assert copy.read_bytes() == data
    assert carries_no_signature(raw(inner, "ledger/generator/job1"))
    assert b"job record" not in raw(inner, "ledger/generator/job1")
    assert StageLedger(store).get("generator", "job1") == b"the job record"

    other = BlobRef(uri=cleaned.uri, sha256=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(BlobError) as mismatch:
        store.get_bytes(other)
    assert mismatch.value.reason_code == ReasonCode.BLOB_CHECKSUM_MISMATCH


def test_on_s3_server_side_encryption_is_asked_for_too(s3: MotoS3) -> None:
    url = f"s3://{s3.BUCKET}/sse-{uuid.uuid4().hex[:8]}"
    inner = S3BlobStore(url, 1024 * 1024, s3.client(), ServerSideEncryption("AES256"))
    store = EncryptingBlobStore(inner, ring("k1"))
    ref = store.put_bytes("photos/j/photo-1.png", png_bytes(), "image/png")
    head = s3.client().head_object(Bucket=s3.BUCKET, Key=ref.uri.split(f"{s3.BUCKET}/", 1)[1])
    assert head["ServerSideEncryption"] == "AES256"
    arguments = ServerSideEncryption("aws:kms", "alias/alive").put_arguments()
    assert arguments == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/alive"}


def test_a_changed_cut_moved_or_planted_blob_is_refused(
    store: EncryptingBlobStore, inner: BlobStore
) -> None:
    video = mp4_like(2 * SEGMENT_BYTES + 10)
    ref = store.put_bytes("videos/job1/signed-1.mp4", video, "video/mp4")
    sealed = raw(inner, "videos/job1/signed-1.mp4")
    segment = SEGMENT_BYTES + 16
    header_end = len(sealed) - (2 * segment + 10 + 16)

    def refused(key: str, data: bytes) -> ReasonCode:
        inner.delete_key(key)
        inner.write_key(key, data)
        with pytest.raises(BlobError) as refusal:
            store.read_key(key)
        return refusal.value.reason_code

    flipped = bytearray(sealed)
    flipped[header_end + 5] ^= 1
    assert refused("videos/job1/a", bytes(flipped)) == ReasonCode.BLOB_DECRYPT_FAILED
    # cut at a segment boundary: the segment now last was not sealed as the last one
    assert refused("videos/job1/b", sealed[: header_end + segment]) == (
        ReasonCode.BLOB_DECRYPT_FAILED
    )
    first, second = slice(header_end, header_end + segment), slice(header_end + segment, None)
    swapped = (
        sealed[:header_end] + sealed[second][:segment] + sealed[first] + sealed[second][segment:]
    )
    assert refused("videos/job1/c", swapped) == ReasonCode.BLOB_DECRYPT_FAILED
    assert refused("videos/job1/d", sealed + b"more") == ReasonCode.BLOB_DECRYPT_FAILED
    # the same bytes under another key of the same job: bound to their key
    assert refused("videos/job1/e", sealed) == ReasonCode.BLOB_DECRYPT_FAILED
    assert refused("videos/job2/e", sealed) == ReasonCode.BLOB_DECRYPT_FAILED
    assert refused("videos/job1/f", exif_jpeg()) == ReasonCode.BLOB_NOT_ENCRYPTED
    assert store.get_bytes(ref) == video  # the original still reads
    with pytest.raises(BlobError) as reserved:
        store.put_bytes("keys/jobs/job1", b"mine", "text/plain")
    assert reserved.value.reason_code == ReasonCode.BLOB_OUTSIDE_STORE


def test_rotation_new_jobs_use_the_new_key_old_blobs_stay_readable_while_it_is_listed(
    inner: BlobStore,
) -> None:
    first = new_keyring_document("2026-01")
    before = EncryptingBlobStore(inner, KekRing.from_document(first))
    old = before.put_bytes("photos/job1/photo-1.png", b"old photo", "image/png")
    old_upload = before.put_bytes("uploads/c/r/photo-1", b"old upload", "image/png")

    rotated = KekRing.from_document(new_keyring_document("2026-02", first["keys"]))
    after = EncryptingBlobStore(inner, rotated)
    new = after.put_bytes("photos/job2/photo-1.png", b"new photo", "image/png")
    assert json.loads(raw(inner, "keys/jobs/job2"))["kek"] == "2026-02"
    assert json.loads(raw(inner, "keys/jobs/job1"))["kek"] == "2026-01"
    # an old job keeps its key: its new blobs are readable beside its old ones
    more = after.put_bytes("videos/job1/signed-1.mp4", b"old job, new blob", "video/mp4")
    for ref, data in ((old, b"old photo"), (old_upload, b"old upload"), (new, b"new photo")):
        assert after.get_bytes(ref) == data
    assert after.get_bytes(more) == b"old job, new blob"

    dropped = EncryptingBlobStore(inner, KekRing.from_document(new_keyring_document("x")))
    for ref in (old, old_upload):
        with pytest.raises(BlobError) as unknown:
            dropped.get_bytes(ref)
        assert unknown.value.reason_code == ReasonCode.BLOB_KEY_UNKNOWN


def test_a_destroyed_job_key_makes_every_blob_of_the_job_unreadable(
    store: EncryptingBlobStore, inner: BlobStore
) -> None:
    photo = store.put_bytes("photos/job1/photo-1.png", b"photo", "image/png")
    video = store.put_bytes("videos/job1/signed-1.mp4", b"video", "video/mp4")
    ledger = StageLedger(store)
    ledger.decide("generator", "job1", b"record")
    ledger.mark_cancelled("job1")
    copy_of_video = raw(inner, "videos/job1/signed-1.mp4")
    other = store.put_bytes("photos/job2/photo-1.png", b"another job", "image/png")
    upload = store.put_bytes("uploads/c/r/photo-1", b"no job yet", "image/png")

    store.destroy_job_key("job1")
    store.destroy_job_key("job1")  # idempotent

    def destroyed(read: object) -> None:
        with pytest.raises(BlobError) as gone:
            read()  # type: ignore[operator]
        assert gone.value.reason_code == ReasonCode.BLOB_KEY_DESTROYED

    destroyed(lambda: store.get_bytes(photo))
    destroyed(lambda: store.get_bytes(video))
    destroyed(lambda: store.local_copy(video).__enter__())
    destroyed(lambda: ledger.get("generator", "job1"))
    destroyed(lambda: ledger.is_cancelled("job1"))
    # a copy left anywhere is unreadable too, and the job gets no new key
    inner.write_key("videos/job1/copy.mp4", copy_of_video)
    destroyed(lambda: store.read_key("videos/job1/copy.mp4"))
    destroyed(lambda: store.put_bytes("videos/job1/replayed.mp4", b"again", "video/mp4"))
    assert b"kek" not in raw(inner, "keys/jobs/job1")
    assert store.get_bytes(other) == b"another job"
    assert store.get_bytes(upload) == b"no job yet"


def test_racing_writers_of_a_new_job_share_one_data_key(inner: BlobStore) -> None:
    keys = ring("k1")
    a, b = EncryptingBlobStore(inner, keys), EncryptingBlobStore(inner, keys)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        refs = list(
            pool.map(
                lambda i: (a if i % 2 else b).put_bytes(f"videos/race/v-{i}", b"%d" % i, "v/x"),
                range(8),
            )
        )
    assert [a.get_bytes(r) for r in refs] == [b"%d" % i for i in range(8)]


def test_list_and_delete(store: EncryptingBlobStore) -> None:
    store.put_bytes("photos/job1/photo-1.png", b"p", "image/png")
    store.put_bytes("videos/job1/generated-1.mp4", b"g", "video/mp4")
    store.put_bytes("videos/job10/generated-1.mp4", b"x", "video/mp4")
    assert [b.key for b in store.list_keys("videos/job1/")] == ["videos/job1/generated-1.mp4"]
    assert {b.key for b in store.list_keys("")} == {
        "photos/job1/photo-1.png",
        "videos/job1/generated-1.mp4",
        "videos/job10/generated-1.mp4",
    }  # the wrapped job keys are not listed
    assert store.delete_key("photos/job1/photo-1.png") is True
    assert store.delete_key("photos/job1/photo-1.png") is False
    assert store.read_key("photos/job1/photo-1.png") is None


class _ToyKms(KeyEncryptionKey):
    """A key-encryption key kept behind an interface, as a KMS keeps it: what a plugin is."""

    calls: list[str] = []

    def __init__(self) -> None:
        self.key_id = "toy-kms/1"
        self._key = LocalKek("inside", b"k" * 32)

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        self.calls.append("wrap")
        return self._key.wrap(data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        self.calls.append("unwrap")
        return self._key.unwrap(wrapped, context)


def toy_kms_ring() -> KekRing:
    return KekRing(_ToyKms())


def test_a_kms_plugs_in_by_settings_and_the_keyring_file_is_the_default(tmp_path: Path) -> None:
    keyring = tmp_path / "keyring.json"
    keyring.write_text(json.dumps(new_keyring_document("file-1")))
    common = ServiceSettings(blob_url=str(tmp_path / "a"), blob_keyring_path=keyring)
    by_file = open_configured_blob_store(common)
    ref = by_file.put_bytes("photos/j/p.png", b"x", "image/png")
    assert json.loads(raw(by_file.inner, "keys/jobs/j"))["kek"] == "file-1"
    assert by_file.get_bytes(ref) == b"x"

    plugged = common.model_copy(
        update={
            "blob_url": str(tmp_path / "b"),
            "blob_keyring_factory": f"{__name__}:toy_kms_ring",
            "blob_keyring_path": tmp_path / "absent.json",
        }
    )
    by_kms = open_configured_blob_store(plugged)
    _ToyKms.calls.clear()
    ref = by_kms.put_bytes("photos/j/p.png", b"y", "image/png")
    assert by_kms.get_bytes(ref) == b"y"
    assert _ToyKms.calls == ["wrap", "unwrap"]
    assert json.loads(raw(by_kms.inner, "keys/jobs/j"))["kek"] == "toy-kms/1"


def test_open_blob_store_always_encrypts(tmp_path: Path) -> None:
    store = open_blob_store(str(tmp_path / "blobs"), ring("k"))
    ref = store.put_bytes("photos/j/p.png", png_bytes(), "image/png")
    assert (tmp_path / "blobs/photos/j/p.png").read_bytes().startswith(MAGIC)
    assert store.get_bytes(ref) == png_bytes()


@pytest.fixture
def many_segments(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(5 * SEGMENT_BYTES))  # an exact multiple: the last one full
    yield path


def test_a_blob_of_whole_segments_and_an_empty_one_round_trip(
    store: EncryptingBlobStore, many_segments: Path
) -> None:
    ref = store.put_file("videos/j/signed-1.mp4", many_segments, "video/mp4")
    with store.local_copy(ref) as copy:
        assert copy.read_bytes() == many_segments.read_bytes()
    empty = store.put_bytes("ledger/reports/j/r1", b"", "text/plain")
    assert store.get_bytes(empty) == b""
