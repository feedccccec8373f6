"""Blob storage for photos, videos and the stage ledger.

Events carry ``BlobRef``s, never media. ``BlobStore`` is the interface; ``LocalBlobStore``
keeps blobs as files under one root directory (the embedded default) and ``S3BlobStore``
(alive/s3_store.py) as objects in an S3-compatible store. ``open_blob_store`` makes the one
the ``ALIVE_BLOB_URL`` setting names: ``s3://bucket/prefix`` or a local folder.

Nothing in the store is trusted just for being there: the local store never follows a
symbolic link (in the blob's name or any folder on its way), reads only regular files
(never a FIFO or a device), caps what it reads, and checks a blob against the sha256 its
reference carries. Each refusal is a ``BlobError`` with its own reason code. A stage's
output is created, never taken over: ``put_bytes`` refuses a key that already holds
anything (BLOB_EXISTS), and stages write under unguessable keys (``output_key``), so a file
planted where a stage will write is neither read as its output nor overwritten.

``create_key`` is the one conditional write everything write-once rests on (blobs, ledger
records, request records): exclusive create on local files (a hard link from a temporary
file already fsynced), ``If-None-Match: *`` on S3. Of two writers racing on a key, across
hosts, exactly one creates it; the other learns that it lost and reads the winner's bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import secrets
import stat
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from alive.jobs import valid_id
from alive.pipeline import PIPELINE
from alive.reasons import ReasonCode, ReasonError
from alive.v1.events_pb2 import BlobRef

if TYPE_CHECKING:
    from alive.encryption import EncryptingBlobStore, KekRing
    from alive.s3_store import ServerSideEncryption
    from alive.settings import ServiceSettings

# Bigger than any photo or video Alive accepts or makes (docs/settings.md).
DEFAULT_MAX_BLOB_BYTES = 512 * 1024 * 1024


class BlobError(ReasonError):
    """A blob cannot be used: missing, outside the store, not a regular file, too large, or
    not what its reference's sha256 says; ``reason_code`` tells which."""


def output_key(prefix: str, extension: str) -> str:
    """A fresh, unguessable key for a stage's output: ``<prefix>-<128 random bits><extension>``.
    A retried step writes a new key; the event its first run sent on keeps naming the first."""
    return f"{prefix}-{secrets.token_hex(16)}{extension}"


@dataclass(frozen=True)
class StoredBlob:
    """A blob as a listing sees it: its key and when it was last written."""

    key: str
    modified_at_ms: int


class BlobStore(ABC):
    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str) -> BlobRef:
        """Creates the blob; BLOB_EXISTS when the key already holds something."""

    @abstractmethod
    def put_file(self, key: str, path: Path, content_type: str) -> BlobRef: ...

    @abstractmethod
    def get_bytes(self, ref: BlobRef) -> bytes:
        """The blob's bytes, checked against ``ref.sha256`` when the ref has one."""

    @abstractmethod
    def local_copy(self, ref: BlobRef) -> AbstractContextManager[Path]:
        """A local file with the blob's bytes, checked, for the duration of the ``with``: the
        blob itself for the local store, a temporary download for an object store."""

    @abstractmethod
    def key_for(self, uri: str) -> str | None:
        """The key of the blob ``uri`` names, or None when it is not in this store."""

    def owns(self, uri: str) -> bool:
        return self.key_for(uri) is not None

    @abstractmethod
    def read_key(self, key: str) -> bytes | None:
        """The bytes under ``key``, or None when it holds nothing."""

    @abstractmethod
    def write_key(self, key: str, data: bytes) -> None:
        """Puts ``data`` under ``key``, replacing what was there (state that changes, such
        as review's rate counters; never a ledger entry)."""

    @abstractmethod
    def create_key(self, key: str, data: bytes) -> bool:
        """Puts ``data`` under ``key`` only if the key holds nothing: True if this call
        created it, False if something was there already (left as it was). Of racing
        callers, across processes and hosts, exactly one gets True."""

    @abstractmethod
    def list_keys(self, prefix: str) -> Iterator[StoredBlob]:
        """Every blob whose key starts with ``prefix`` (a folder ends it with ``/``)."""

    @abstractmethod
    def delete_key(self, key: str) -> bool:
        """Removes the blob; whether there was one (a second delete is a no-op)."""

    def keys_under(self, prefix: str) -> list[str]:
        """The keys of ``list_keys``, sorted (what an erasure deletes, alive/erasure.py)."""
        return sorted(blob.key for blob in self.list_keys(prefix))


@asynccontextmanager
async def local_file(store: BlobStore, ref: BlobRef) -> AsyncIterator[Path]:
    """``store.local_copy(ref)`` for a coroutine: fetching and cleaning up run off the event
    loop."""
    copy = store.local_copy(ref)
    path = await asyncio.to_thread(copy.__enter__)
    try:
        yield path
    finally:
        await asyncio.to_thread(copy.__exit__, None, None, None)


def open_blob_store(
    url: str,
    keys: KekRing,
    max_bytes: int = DEFAULT_MAX_BLOB_BYTES,
    server_side_encryption: ServerSideEncryption | None = None,
) -> EncryptingBlobStore:
    """The store ``url`` names, encrypting (alive/encryption.py) with ``keys``:
    ``s3://bucket/prefix`` (credentials and endpoint from the standard AWS environment,
    ``server_side_encryption`` asked of it as well) or a local folder (a path or ``file://``
    URL)."""
    from alive.encryption import EncryptingBlobStore, ciphertext_bytes

    inner = open_plain_blob_store(url, ciphertext_bytes(max_bytes), server_side_encryption)
    return EncryptingBlobStore(inner, keys, max_bytes)


def open_configured_blob_store(settings: ServiceSettings) -> EncryptingBlobStore:
    """The blob store a service uses: ``open_blob_store`` with the ``ALIVE_BLOB_*``
    settings."""
    from alive.encryption import KekRing
    from alive.s3_store import ServerSideEncryption

    keys = KekRing.from_settings(settings.blob_keyring_path, settings.blob_keyring_factory)
    sse = (
        ServerSideEncryption(settings.blob_sse, settings.blob_sse_kms_key_id)
        if settings.blob_sse
        else None
    )
    return open_blob_store(settings.blob_url, keys, settings.blob_max_bytes, sse)


def open_plain_blob_store(
    url: str,
    max_bytes: int = DEFAULT_MAX_BLOB_BYTES,
    server_side_encryption: ServerSideEncryption | None = None,
) -> BlobStore:
    """The store that holds the bytes, without Alive's encryption: for tests and tools that
    look at what is stored, never for a service."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        from alive.s3_store import S3BlobStore

        return S3BlobStore(url, max_bytes, server_side_encryption=server_side_encryption)
    if parsed.scheme not in ("", "file"):
        raise ValueError(f"ALIVE_BLOB_URL must be s3://bucket/prefix or a folder, got {url!r}")
    return LocalBlobStore(Path(unquote(parsed.path) if parsed.scheme else url), max_bytes)


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root``; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BLOB_BYTES) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    def put_bytes(self, key: str, data: bytes, content_type: str) -> BlobRef:
        """Creates the file whole or not at all; a file (or link, or anything) already at
        the key is an error, never taken as this write's result."""
        if not self.create_key(key, data):
            raise BlobError(ReasonCode.BLOB_EXISTS, f"{key!r} already exists")
        return BlobRef(
            uri=self._path_for_key(key).as_uri(),
            sha256=hashlib.sha256(data).hexdigest(),
            content_type=content_type,
            size_bytes=len(data),
        )

    def put_file(self, key: str, path: Path, content_type: str) -> BlobRef:
        """Like ``put_bytes``, copied in chunks: a video is never held whole in memory."""
        target = self._path_for_key(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out, path.open("rb") as source:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, target)
        except FileExistsError as exc:
            raise BlobError(ReasonCode.BLOB_EXISTS, f"{key!r} already exists") from exc
        finally:
            os.unlink(tmp)
        _sync_folder(target.parent)
        return BlobRef(
            uri=target.as_uri(),
            sha256=digest.hexdigest(),
            content_type=content_type,
            size_bytes=size,
        )

    def get_bytes(self, ref: BlobRef) -> bytes:
        data = self._read(self._path_for_ref(ref))
        if ref.sha256 and hashlib.sha256(data).hexdigest() != ref.sha256:
            raise BlobError(
                ReasonCode.BLOB_CHECKSUM_MISMATCH, f"{ref.uri} does not match its sha256"
            )
        return data

    def local_path(self, ref: BlobRef) -> Path:
        """The blob's file, once checked like ``get_bytes`` checks it (other libraries open
        it by name next)."""
        self.get_bytes(ref)
        return self._path_for_ref(ref)

    @contextmanager
    def local_copy(self, ref: BlobRef) -> Iterator[Path]:
        yield self.local_path(ref)

    def _path_for_ref(self, ref: BlobRef) -> Path:
        key = self.key_for(ref.uri)
        if key is None:
            raise BlobError(ReasonCode.BLOB_OUTSIDE_STORE, f"{ref.uri!r} is not in this blob store")
        return self._path_for_key(key)

    def key_for(self, uri: str) -> str | None:
        parsed = urlparse(uri)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            return None
        path = Path(os.path.normpath(unquote(parsed.path)))
        if not path.is_relative_to(self.root) or path == self.root:
            return None
        return path.relative_to(self.root).as_posix()

    def read_key(self, key: str) -> bytes | None:
        try:
            return self._read(self._path_for_key(key))
        except BlobError as exc:
            if exc.reason_code == ReasonCode.BLOB_NOT_FOUND:
                return None
            raise

    def _read(self, path: Path) -> bytes:
        """A regular file's bytes, opened without following a link or waiting on a FIFO."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError as exc:
            raise BlobError(ReasonCode.BLOB_NOT_FOUND, f"no blob {path.name!r}") from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise BlobError(ReasonCode.BLOB_NOT_REGULAR_FILE, "a symbolic link") from exc
            raise
        with os.fdopen(fd, "rb") as file:
            mode = os.fstat(file.fileno())
            if not stat.S_ISREG(mode.st_mode):
                raise BlobError(ReasonCode.BLOB_NOT_REGULAR_FILE, "not a regular file")
            if mode.st_size > self.max_bytes:
                raise BlobError(ReasonCode.BLOB_TOO_LARGE, f"over {self.max_bytes} bytes")
            data = file.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise BlobError(ReasonCode.BLOB_TOO_LARGE, f"over {self.max_bytes} bytes")
        return data

    def write_key(self, key: str, data: bytes) -> None:
        path = self._path_for_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._temporary(path, data), path)
        _sync_folder(path.parent)

    def create_key(self, key: str, data: bytes) -> bool:
        """The whole file or none, created only where nothing is: a hard link from a
        temporary file already on disk (link(2) fails if the name exists, and does not
        follow a link planted there)."""
        path = self._path_for_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._temporary(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        _sync_folder(path.parent)
        return True

    def list_keys(self, prefix: str) -> Iterator[StoredBlob]:
        """Regular files only, never through a link; temporary files of writes in progress
        are not blobs."""
        for folder, subfolders, files in os.walk(self.root, followlinks=False):
            base = Path(folder).relative_to(self.root).as_posix()
            base = "" if base == "." else f"{base}/"
            subfolders[:] = [d for d in subfolders if _may_hold(base + d + "/", prefix)]
            for name in sorted(files):
                key = base + name
                if name.startswith(".tmp-") or not key.startswith(prefix):
                    continue
                try:
                    info = os.lstat(Path(folder) / name)
                except FileNotFoundError:  # deleted since the folder was read
                    continue
                if stat.S_ISREG(info.st_mode):
                    yield StoredBlob(key, info.st_mtime_ns // 1_000_000)

    def delete_key(self, key: str) -> bool:
        path = self._path_for_key(key)
        try:
            os.unlink(path)  # removes a link itself, never what it points to
        except FileNotFoundError:
            return False
        _sync_folder(path.parent)
        return True

    @staticmethod
    def _temporary(path: Path, data: bytes) -> str:
        """A temporary file beside ``path`` holding ``data``, on disk before it is renamed or
        linked (a crash then leaves the whole file or none, never a torn one under a key)."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def _path_for_key(self, key: str) -> Path:
        root = str(self.root)
        path = os.path.normpath(os.path.join(root, key))
        if not path.startswith(root + os.sep):
            raise BlobError(ReasonCode.BLOB_OUTSIDE_STORE, f"blob key {key!r} escapes the store")
        # No folder on its way may be a link. The root was resolved when the store opened,
        # so only the folders below it are looked at (realpath re-walked the whole path,
        # several times for every event a stage handles).
        folder = os.path.dirname(path)
        while folder != root:
            with contextlib.suppress(FileNotFoundError):  # not made yet: nothing to follow
                if stat.S_ISLNK(os.lstat(folder).st_mode):
                    raise BlobError(
                        ReasonCode.BLOB_NOT_REGULAR_FILE, "a folder on its way is a link"
                    )
            folder = os.path.dirname(folder)
        return Path(path)


_CHUNK = 1024 * 1024


def _may_hold(folder: str, prefix: str) -> bool:
    """Whether keys under ``folder`` (ending in /) can start with ``prefix``."""
    return folder.startswith(prefix) or prefix.startswith(folder)


def _sync_folder(folder: Path) -> None:
    """Makes a new name in ``folder`` durable (the entry, not only the file's bytes)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Ledger folders of their own, beside the stages' (no stage has these names).
_CANCELLED = "cancelled"
# ledger/erased/<job>: the job was erased. Not one of the job's own entries: it must stay
# readable once the job's data key is destroyed.
_ERASED = "erased"
_SENT = "sent"  # ledger/sent/<stage>/<job>: the record's events went out
_REPORTS = "reports"  # ingest's report markers, ledger/reports/<job>/<report>
REQUEST_RECORDS = "requests"  # ingest's request records, ledger/requests/<job>
# The ledger folders whose entries belong to one job (encrypted with its key).
_JOB_LEDGER_FOLDERS = frozenset(
    {spec.name for spec in PIPELINE} | {_CANCELLED, _REPORTS, REQUEST_RECORDS}
)


def ledger_job(key: str) -> str | None:
    """The job a ledger entry belongs to (``ledger/<stage>/<job>``, ``ledger/sent/<stage>/<job>``,
    ``ledger/cancelled/<job>``, ``ledger/requests/<job>``, ``ledger/reports/<job>/...``), or
    None for another key."""
    parts = key.split("/")
    if len(parts) >= 4 and parts[:2] == ["ledger", _SENT]:
        parts = ["ledger", *parts[2:]]
    if len(parts) >= 3 and parts[0] == "ledger" and parts[1] in _JOB_LEDGER_FOLDERS:
        return parts[2] if valid_id(parts[2]) else None
    return None


class StageLedger:
    """What each stage decided, per job: one record per stage and job, created once.

    ``decide`` creates ``ledger/<stage>/<job id>`` only if it is absent and returns the
    record that stands: this caller's, or the one another replica created first (the loser
    of a race sends the winner's decision, so a job has one outcome per stage). The record
    is made before the decision's events are sent; ``mark_sent`` records, once they are
    acknowledged, that they went out (``ledger/sent/<stage>/<job id>``). A record without
    that mark is a decision whose events may not have gone out: whoever sees it sends them
    again (alive/processing.py). Review reads a job's record from here too.
    """

    def __init__(self, store: BlobStore) -> None:
        self._store = store

    def get(self, stage: str, job_id: str) -> bytes | None:
        return self._store.read_key(self._key(stage, job_id))

    def decide(self, stage: str, job_id: str, record: bytes) -> bytes:
        """Creates the job's record for ``stage`` unless it has one; returns the one that
        stands (``record`` if this call created it)."""
        key = self._key(stage, job_id)
        if self._store.create_key(key, record):
            return record
        standing = self._store.read_key(key)
        if standing is None:  # removed just now: transient, the caller's retry decides again
            raise OSError(f"{key!r} was removed right after refusing to be replaced")
        return standing

    def rewrite(self, stage: str, job_id: str, record: bytes) -> None:
        """Replaces the job's record once its events are sent, for what must not be kept
        longer than that (Submit's request record drops the prompt)."""
        self._store.write_key(self._key(stage, job_id), record)

    def mark_sent(self, stage: str, job_id: str) -> None:
        """Records that the events of the job's record for ``stage`` are acknowledged."""
        self._store.create_key(self._key(f"{_SENT}/{stage}", job_id), b"")

    def was_sent(self, stage: str, job_id: str) -> bool:
        return self._store.read_key(self._key(f"{_SENT}/{stage}", job_id)) is not None

    def mark_cancelled(self, job_id: str) -> None:
        """Records that the job's creator cancelled it: no stage works on it after this."""
        self._store.create_key(self._key(_CANCELLED, job_id), b"cancelled")

    def is_cancelled(self, job_id: str) -> bool:
        return self.get(_CANCELLED, job_id) is not None

    def mark_erased(self, job_id: str, record: bytes) -> None:
        """Records that the job was erased (alive/erasure.py): no stage works on it again,
        whatever event still names it. The mark outlives the job's data and holds no
        personal data (``record``: when, and the erasure's id)."""
        self._store.create_key(self._key(_ERASED, job_id), record)  # the first one stands

    def is_erased(self, job_id: str) -> bool:
        return self.get(_ERASED, job_id) is not None

    def entries(self, job_id: str) -> list[str]:
        """The keys of the job's ledger entries (every stage's record and sent mark, its
        request record, its cancellation, its reports), not its erasure mark: what an
        erasure deletes."""
        decided = [spec.name for spec in PIPELINE] + [REQUEST_RECORDS]
        folders = [*decided, *(f"{_SENT}/{name}" for name in decided), _CANCELLED]
        keys = [self._key(folder, job_id) for folder in folders]
        return keys + self._store.keys_under(f"ledger/reports/{job_id}/")

    @staticmethod
    def valid_job_id(job_id: str) -> bool:
        return valid_id(job_id)

    def _key(self, stage: str, job_id: str) -> str:
        if not self.valid_job_id(job_id):
            raise BlobError(ReasonCode.INVALID_JOB_ID, f"invalid job id {job_id!r}")
        return f"ledger/{stage}/{job_id}"
