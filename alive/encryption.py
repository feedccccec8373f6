"""Encryption at rest: every blob Alive stores is AES-256-GCM ciphertext.

``EncryptingBlobStore`` wraps the store that holds the bytes (``LocalBlobStore`` or
``S3BlobStore``); ``open_blob_store`` always puts it in front, so stages read and write
plaintext through the ``BlobStore`` interface and never see a key.

Keys (envelope encryption):
- a **data key** (256 random bits) per job, stored wrapped under ``keys/jobs/<job id>``,
  encrypts every blob of that job: its photo, its videos, its ledger entries (``job_scope``
  tells which keys belong to a job). ``destroy_job_key`` replaces the wrapped key with a
  tombstone, and every copy of every blob of the job is unreadable from then on, wherever
  it lies (crypto-shredding); a read or a write then fails with BLOB_KEY_DESTROYED;
- a blob that belongs to no job (an upload, before ingest has made it a job; a dead-letter
  payload; a per-creator ledger entry) carries its own data key, wrapped, in its header;
- data keys are wrapped by a **key-encryption key** (KEK). ``KekRing`` holds the current
  KEK, which wraps new data keys, and older ones, which still unwrap the data keys they
  wrapped. Rotation: add a new key, make it current; new jobs use it, old blobs stay
  readable while their KEK is listed (drop it once their blobs have expired).

A KEK is anything with ``wrap``/``unwrap`` (``KeyEncryptionKey``). The default,
``LocalKek``, is an AES-256 key read from the keyring file (``ALIVE_BLOB_KEYRING_PATH``). A
cloud KMS plugs in as a ``KeyEncryptionKey`` whose ``wrap``/``unwrap`` call the KMS's
encrypt/decrypt with ``context`` as the encryption context (so a wrapped key only unwraps
for the job it was made for), the key material never leaving the KMS; a function returning a
``KekRing`` of those is named by ``ALIVE_BLOB_KEYRING_FACTORY`` (``package.module:function``)
and replaces the keyring file (docs/security.md, encryption at rest).

The blob format, streamed in fixed segments so a video is never held whole in memory::

    MAGIC (7 bytes) | header length (2 bytes, big-endian) | header (JSON)
    segment 0 | segment 1 | ... | last segment

Each segment is the AES-GCM ciphertext of up to ``SEGMENT_BYTES`` of plaintext plus its
16-byte tag, under a key derived for this blob alone (HKDF of the data key with the header's
random salt), with a nonce made of the segment's position and a last-segment flag. The
associated data is the header and the blob's key in the store, so a segment cannot be
reordered, dropped, moved to another blob, or the blob cut short or extended, without the
read failing (BLOB_DECRYPT_FAILED). ``BlobRef.sha256`` and ``size_bytes`` stay those of the
plaintext, checked after decryption as before: the reference still names exactly the bytes
a stage wrote.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib
import io
import json
import os
import secrets
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from alive.blobs import (
    DEFAULT_MAX_BLOB_BYTES,
    BlobError,
    BlobStore,
    StoredBlob,
    ledger_job,
)
from alive.jobs import valid_id
from alive.reasons import ReasonCode
from alive.scratch import scratch_folder
from alive.v1.events_pb2 import BlobRef

MAGIC = b"ALVENC1"  # no image or video signature starts so
SEGMENT_BYTES = 256 * 1024
_TAG_BYTES = 16
_MAX_HEADER_BYTES = 4096
_KEY_BYTES = 32
# Where wrapped job data keys live, in the inner store; stages cannot write there.
KEYS_PREFIX = "keys/"
_JOB_KEYS = f"{KEYS_PREFIX}jobs/"


class KeyEncryptionKey(ABC):
    """Wraps and unwraps data keys. ``context`` names what the data key is for (a job, a
    blob); a key wrapped with one context does not unwrap with another. Errors other than
    a wrong key or context (a KMS unreachable) raise OSError: the runner retries them."""

    key_id: str

    @abstractmethod
    def wrap(self, data_key: bytes, context: bytes) -> bytes: ...

    @abstractmethod
    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """The data key; BlobError(BLOB_DECRYPT_FAILED) when this key did not wrap it for
        ``context``."""


class LocalKek(KeyEncryptionKey):
    """A KEK held in the process: AES-256-GCM, a random nonce per wrap, ``context`` as the
    associated data."""

    def __init__(self, key_id: str, secret: bytes) -> None:
        if len(secret) != _KEY_BYTES:
            raise ValueError(f"key-encryption key {key_id!r} must be {_KEY_BYTES} bytes")
        self.key_id = key_id
        self._aead = AESGCM(secret)

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], context)
        except InvalidTag as exc:
            raise BlobError(
                ReasonCode.BLOB_DECRYPT_FAILED, f"key {self.key_id!r} does not unwrap it"
            ) from exc


class KekRing:
    """The key-encryption keys: ``current`` wraps new data keys, every listed one unwraps."""

    def __init__(self, current: KeyEncryptionKey, older: tuple[KeyEncryptionKey, ...] = ()):
        self.current = current
        self._by_id = {k.key_id: k for k in (*older, current)}

    def get(self, key_id: str) -> KeyEncryptionKey:
        try:
            return self._by_id[key_id]
        except KeyError:
            raise BlobError(
                ReasonCode.BLOB_KEY_UNKNOWN, f"key-encryption key {key_id!r} is not listed"
            ) from None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> KekRing:
        """``{"current": id, "keys": {id: base64 of 32 bytes, ...}}``."""
        keys = {
            key_id: LocalKek(key_id, base64.b64decode(secret, validate=True))
            for key_id, secret in dict(document["keys"]).items()
        }
        current = str(document["current"])
        if current not in keys:
            raise ValueError(f"the current key-encryption key {current!r} is not in keys")
        return cls(keys[current], tuple(k for i, k in keys.items() if i != current))

    @classmethod
    def from_file(cls, path: Path) -> KekRing:
        return cls.from_document(json.loads(path.read_text()))

    @classmethod
    def from_settings(cls, keyring_path: Path, factory: str | None = None) -> KekRing:
        """The factory's keyring (``package.module:function``, a KMS) when one is named,
        else the keyring file's."""
        if factory is None:
            return cls.from_file(keyring_path)
        module, _, name = factory.partition(":")
        ring = getattr(importlib.import_module(module), name)()
        if not isinstance(ring, KekRing):
            raise TypeError(f"{factory} returned {type(ring).__name__}, not a KekRing")
        return ring


def new_keyring_document(key_id: str, older: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A keyring with a fresh current key ``key_id`` (and the ``older`` keys kept): what
    a rotation writes."""
    keys = dict(older or {})
    keys[key_id] = base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()
    return {"current": key_id, "keys": keys}


# The folders whose blobs are a job's, named by its id (alive/jobs.py).
_JOB_FOLDERS = ("photos", "prompts", "videos", "dlq")


def job_scope(key: str) -> str | None:
    """The job whose data key encrypts the blob at ``key``, or None for a blob of no job.

    A job's blobs: ``photos/<job>/...``, ``prompts/<job>/...``, ``videos/<job>/...``,
    ``dlq/<job>/...`` (alive/jobs.py) and its ledger entries (alive/blobs.py ``ledger_job``)."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] in _JOB_FOLDERS and valid_id(parts[1]):
        return parts[1]
    return ledger_job(key)


@dataclass(frozen=True)
class _Header:
    salt: bytes
    job_id: str | None = None
    kek_id: str | None = None  # for a blob of no job: who wrapped its data key
    wrapped_key: bytes | None = None

    def encode(self) -> bytes:
        fields: dict[str, str] = {"salt": _b64(self.salt)}
        if self.job_id is not None:
            fields["job"] = self.job_id
        if self.kek_id is not None and self.wrapped_key is not None:
            fields["kek"] = self.kek_id
            fields["key"] = _b64(self.wrapped_key)
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> _Header:
        try:
            fields = json.loads(data)
            job_id, kek_id, wrapped = fields.get("job"), fields.get("kek"), fields.get("key")
            header = cls(
                salt=_unb64(fields["salt"]),
                job_id=str(job_id) if job_id is not None else None,
                kek_id=str(kek_id) if kek_id is not None else None,
                wrapped_key=_unb64(wrapped) if wrapped is not None else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BlobError(ReasonCode.BLOB_DECRYPT_FAILED, "unreadable blob header") from exc
        if (header.job_id is None) == (header.wrapped_key is None):
            raise BlobError(ReasonCode.BLOB_DECRYPT_FAILED, "a blob header names no one key")
        return header


class _Sealer:
    """One blob's segments: the per-blob key, nonces and associated data."""

    def __init__(self, data_key: bytes, prefix: bytes, salt: bytes, key: str) -> None:
        blob_key = HKDF(
            algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=salt, info=b"alive blob v1"
        ).derive(data_key)
        self._aead = AESGCM(blob_key)
        self._associated = prefix + b"\x00" + key.encode()

    @staticmethod
    def _nonce(index: int, last: bool) -> bytes:
        return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")

    def seal(self, index: int, plaintext: bytes, last: bool) -> bytes:
        return self._aead.encrypt(self._nonce(index, last), plaintext, self._associated)

    def open(self, index: int, ciphertext: bytes, last: bool) -> bytes:
        try:
            return self._aead.decrypt(self._nonce(index, last), ciphertext, self._associated)
        except InvalidTag as exc:
            raise BlobError(
                ReasonCode.BLOB_DECRYPT_FAILED, "a segment does not authenticate"
            ) from exc


def ciphertext_bytes(plaintext_bytes: int) -> int:
    """The most a blob of ``plaintext_bytes`` takes encrypted (for the inner store's cap)."""
    segments = max(1, -(-plaintext_bytes // SEGMENT_BYTES))
    return len(MAGIC) + 2 + _MAX_HEADER_BYTES + plaintext_bytes + segments * _TAG_BYTES


class EncryptingBlobStore(BlobStore):
    """A ``BlobStore`` that encrypts what it writes to ``inner`` and decrypts what it reads
    (see the module's docstring). It refuses blobs that are not its ciphertext
    (BLOB_NOT_ENCRYPTED): a plaintext file planted in the store is not read."""

    def __init__(
        self, inner: BlobStore, keys: KekRing, max_bytes: int = DEFAULT_MAX_BLOB_BYTES
    ) -> None:
        self.inner = inner
        self.keys = keys
        self.max_bytes = max_bytes

    # The job data keys

    def destroy_job_key(self, job_id: str) -> None:
        """Crypto-shreds the job: its wrapped data key is replaced by a tombstone, so no blob
        of the job (nor any copy of one) can be decrypted again, and no new blob of the job
        can be written. Idempotent."""
        tombstone = json.dumps({"destroyed": True}).encode()
        self.inner.write_key(self._job_key_name(job_id), tombstone)

    def _job_key_name(self, job_id: str) -> str:
        if not valid_id(job_id):
            raise BlobError(ReasonCode.INVALID_JOB_ID, f"invalid job id {job_id!r}")
        return f"{_JOB_KEYS}{job_id}"

    def _job_data_key(self, job_id: str, create: bool) -> bytes:
        """The job's data key, unwrapped; made (once, whichever replica is first) when
        ``create`` and there is none yet."""
        name = self._job_key_name(job_id)
        context = f"alive job key\x00{job_id}".encode()
        while True:
            record = self.inner.read_key(name)
            if record is not None:
                break
            if not create:
                raise BlobError(
                    ReasonCode.BLOB_KEY_DESTROYED, f"job {job_id} has no data key (erased?)"
                )
            data_key = secrets.token_bytes(_KEY_BYTES)
            wrapped = self.keys.current.wrap(data_key, context)
            fields = {"kek": self.keys.current.key_id, "key": _b64(wrapped)}
            try:
                self.inner.put_bytes(name, json.dumps(fields).encode(), "application/json")
                return data_key
            except BlobError as exc:
                if exc.reason_code != ReasonCode.BLOB_EXISTS:
                    raise
                # another writer made the job's key first: use theirs
        try:
            fields = json.loads(record)
        except ValueError as exc:
            raise BlobError(ReasonCode.BLOB_DECRYPT_FAILED, f"job {job_id}'s key record") from exc
        if fields.get("destroyed"):
            raise BlobError(ReasonCode.BLOB_KEY_DESTROYED, f"job {job_id}'s data key is destroyed")
        return self.keys.get(str(fields["kek"])).unwrap(_unb64(fields["key"]), context)

    # Writing

    def _start(self, key: str) -> tuple[bytes, _Sealer]:
        """The blob's prefix (magic, header) and its sealer."""
        if key.startswith(KEYS_PREFIX):
            raise BlobError(ReasonCode.BLOB_OUTSIDE_STORE, f"{key!r} is reserved for keys")
        salt = secrets.token_bytes(32)
        job_id = job_scope(key)
        if job_id is not None:
            data_key = self._job_data_key(job_id, create=True)
            header = _Header(salt=salt, job_id=job_id)
        else:
            data_key = secrets.token_bytes(_KEY_BYTES)
            kek = self.keys.current
            wrapped = kek.wrap(data_key, _blob_context(key))
            header = _Header(salt=salt, kek_id=kek.key_id, wrapped_key=wrapped)
        encoded = header.encode()
        prefix = MAGIC + len(encoded).to_bytes(2, "big") + encoded
        return prefix, _Sealer(data_key, prefix, salt, key)

    def _encrypt(self, key: str, source: IO[bytes], sink: IO[bytes]) -> tuple[str, int]:
        """Writes the ciphertext of ``source`` to ``sink``; the plaintext's sha256 and size."""
        prefix, sealer = self._start(key)
        sink.write(prefix)
        digest, size, index = hashlib.sha256(), 0, 0
        segment = _read(source, SEGMENT_BYTES)
        while True:
            following = _read(source, SEGMENT_BYTES) if len(segment) == SEGMENT_BYTES else b""
            digest.update(segment)
            size += len(segment)
            if size > self.max_bytes:
                raise BlobError(ReasonCode.BLOB_TOO_LARGE, f"over {self.max_bytes} bytes")
            sink.write(sealer.seal(index, segment, last=not following))
            if not following:
                return digest.hexdigest(), size
            segment, index = following, index + 1

    def put_bytes(self, key: str, data: bytes, content_type: str) -> BlobRef:
        with _spooled() as sink:
            digest, size = self._encrypt(key, io.BytesIO(data), sink)
            sink.seek(0)
            stored = self.inner.put_bytes(key, sink.read(), content_type)
        return _plain_ref(stored, digest, size, content_type)

    def put_file(self, key: str, path: Path, content_type: str) -> BlobRef:
        with scratch_folder("seal") as folder:
            sealed = Path(folder) / "blob"
            with path.open("rb") as source, sealed.open("wb") as sink:
                digest, size = self._encrypt(key, source, sink)
            stored = self.inner.put_file(key, sealed, content_type)
        return _plain_ref(stored, digest, size, content_type)

    def write_key(self, key: str, data: bytes) -> None:
        self.inner.write_key(key, self._sealed(key, data))

    def create_key(self, key: str, data: bytes) -> bool:
        return self.inner.create_key(key, self._sealed(key, data))

    def _sealed(self, key: str, data: bytes) -> bytes:
        with _spooled() as sink:
            self._encrypt(key, io.BytesIO(data), sink)
            sink.seek(0)
            return sink.read()

    # Reading

    def _decrypt(self, key: str, source: IO[bytes], sink: IO[bytes]) -> tuple[str, int]:
        """Writes the plaintext of the ciphertext in ``source`` to ``sink``; its sha256 and
        size. Nothing is written before its segment has authenticated."""
        start = _read(source, len(MAGIC) + 2)
        if len(start) < len(MAGIC) + 2 or not start.startswith(MAGIC):
            raise BlobError(ReasonCode.BLOB_NOT_ENCRYPTED, f"{key!r} is not an encrypted blob")
        length = int.from_bytes(start[len(MAGIC) :], "big")
        if length > _MAX_HEADER_BYTES:
            raise BlobError(ReasonCode.BLOB_DECRYPT_FAILED, "blob header too long")
        encoded = _read(source, length)
        header = _Header.decode(encoded)
        if header.job_id is not None:
            if header.job_id != job_scope(key):  # a job's blob copied under another key
                raise BlobError(ReasonCode.BLOB_DECRYPT_FAILED, "blob of another job's key")
            data_key = self._job_data_key(header.job_id, create=False)
        else:
            assert header.kek_id is not None and header.wrapped_key is not None
            kek = self.keys.get(header.kek_id)
            data_key = kek.unwrap(header.wrapped_key, _blob_context(key))
        sealer = _Sealer(data_key, start + encoded, header.salt, key)
        digest, size, index = hashlib.sha256(), 0, 0
        sealed = SEGMENT_BYTES + _TAG_BYTES
        segment = _read(source, sealed)
        while True:
            following = _read(source, sealed) if len(segment) == sealed else b""
            plaintext = sealer.open(index, segment, last=not following)
            digest.update(plaintext)
            size += len(plaintext)
            if size > self.max_bytes:
                raise BlobError(ReasonCode.BLOB_TOO_LARGE, f"over {self.max_bytes} bytes")
            sink.write(plaintext)
            if not following:
                return digest.hexdigest(), size
            segment, index = following, index + 1

    def _decrypt_bytes(self, key: str, data: bytes) -> tuple[bytes, str]:
        sink = io.BytesIO()
        digest, _ = self._decrypt(key, io.BytesIO(data), sink)
        return sink.getvalue(), digest

    def get_bytes(self, ref: BlobRef) -> bytes:
        key = self._key_of(ref)
        data, digest = self._decrypt_bytes(key, self.inner.get_bytes(_ciphertext_ref(ref)))
        _check_digest(ref, digest)
        return data

    @contextmanager
    def local_copy(self, ref: BlobRef) -> Iterator[Path]:
        """The plaintext in a private temporary file (mode 0600), checked, removed after the
        ``with``; the ciphertext is streamed through, never held whole."""
        key = self._key_of(ref)
        with (
            self.inner.local_copy(_ciphertext_ref(ref)) as sealed,
            scratch_folder("blob") as folder,
        ):
            path = Path(folder) / Path(key).name
            with sealed.open("rb") as source, path.open("wb") as sink:
                digest, _ = self._decrypt(key, source, sink)
            _check_digest(ref, digest)
            yield path

    def read_key(self, key: str) -> bytes | None:
        data = self.inner.read_key(key)
        return None if data is None else self._decrypt_bytes(key, data)[0]

    # Everything else passes through

    def key_for(self, uri: str) -> str | None:
        return self.inner.key_for(uri)

    def list_keys(self, prefix: str) -> Iterator[StoredBlob]:
        return (b for b in self.inner.list_keys(prefix) if not b.key.startswith(KEYS_PREFIX))

    def delete_key(self, key: str) -> bool:
        return self.inner.delete_key(key)

    def _key_of(self, ref: BlobRef) -> str:
        key = self.key_for(ref.uri)
        if key is None:
            raise BlobError(ReasonCode.BLOB_OUTSIDE_STORE, f"{ref.uri!r} is not in this blob store")
        return key


def _read(source: IO[bytes], size: int) -> bytes:
    """``size`` bytes, fewer only at the end of ``source`` (a stream may return less)."""
    data = source.read(size)
    while 0 < len(data) < size:
        more = source.read(size - len(data))
        if not more:
            break
        data += more
    return data


def _blob_context(key: str) -> bytes:
    return f"alive blob key\x00{key}".encode()


def _ciphertext_ref(ref: BlobRef) -> BlobRef:
    """The reference the inner store reads by: its sha256 is the plaintext's, checked here
    after decryption, not the inner store's on the ciphertext."""
    return BlobRef(uri=ref.uri, content_type=ref.content_type)


def _plain_ref(stored: BlobRef, digest: str, size: int, content_type: str) -> BlobRef:
    return BlobRef(uri=stored.uri, sha256=digest, content_type=content_type, size_bytes=size)


def _check_digest(ref: BlobRef, actual: str) -> None:
    if ref.sha256 and actual != ref.sha256:
        raise BlobError(ReasonCode.BLOB_CHECKSUM_MISMATCH, f"{ref.uri} does not match its sha256")


def _spooled() -> AbstractContextManager[IO[bytes]]:
    """Ciphertext of a small blob kept in memory, of a large one spilled to a private file."""
    return tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc
