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
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import secrets
import stat
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

from alive.jobs import valid_id
from alive.pipeline import PIPELINE
from alive.reasons import ReasonCode, ReasonError
from alive.v1.events_pb2 import BlobRef

# Bigger than any photo or video Alive accepts or makes (docs/settings.md).
DEFAULT_MAX_BLOB_BYTES = 512 * 1024 * 1024


class BlobError(ReasonError):
    """A blob cannot be used: missing, outside the store, not a regular file, too large, or
    not what its reference's sha256 says; ``reason_code`` tells which."""


def output_key(prefix: str, extension: str) -> str:
    """A fresh, unguessable key for a stage's output: ``<prefix>-<128 random bits><extension>``.
    A retried step writes a new key; the event its first run sent on keeps naming the first."""
    return f"{prefix}-{secrets.token_hex(16)}{extension}"


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
    def read_key(self, key: str) -> bytes | None: ...

    @abstractmethod
    def write_key(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """Every key that starts with ``prefix`` (a folder ends with "/"), sorted: what an
        erasure deletes (alive/erasure.py)."""

    @abstractmethod
    def delete_key(self, key: str) -> bool:
        """Deletes the blob; False when there was none."""


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


def open_blob_store(url: str, max_bytes: int = DEFAULT_MAX_BLOB_BYTES) -> BlobStore:
    """The store ``url`` names: ``s3://bucket/prefix`` (credentials and endpoint from the
    standard AWS environment) or a local folder (a path or ``file://`` URL)."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        from alive.s3_store import S3BlobStore

        return S3BlobStore(url, max_bytes)
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
        path = self._path_for_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._temporary(path, data)
        try:
            os.link(tmp, path)  # atomic create-if-absent; does not follow a link at path
        except FileExistsError as exc:
            raise BlobError(ReasonCode.BLOB_EXISTS, f"{key!r} already exists") from exc
        finally:
            os.unlink(tmp)
        _sync_folder(path.parent)
        return BlobRef(
            uri=path.as_uri(),
            sha256=hashlib.sha256(data).hexdigest(),
            content_type=content_type,
            size_bytes=len(data),
        )

    def put_file(self, key: str, path: Path, content_type: str) -> BlobRef:
        return self.put_bytes(key, path.read_bytes(), content_type)

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

    def list_keys(self, prefix: str) -> list[str]:
        # Walk from the deepest folder the prefix names whole; keys are matched as text after.
        folder = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        folder = Path(os.path.normpath(folder))
        if not folder.is_relative_to(self.root) or not folder.is_dir() or folder.is_symlink():
            return []
        keys = []
        for parent, dirs, files in os.walk(folder):  # never follows a link to a folder
            for name in files:
                key = (Path(parent) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix) and not name.startswith(".tmp-"):
                    keys.append(key)
            dirs.sort()
        return sorted(keys)

    def delete_key(self, key: str) -> bool:
        path = self._path_for_key(key)
        try:
            os.unlink(path)  # a link is removed itself, never what it points to
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
        path = Path(os.path.normpath(self.root / key))
        if not path.is_relative_to(self.root) or path == self.root:
            raise BlobError(ReasonCode.BLOB_OUTSIDE_STORE, f"blob key {key!r} escapes the store")
        if Path(os.path.realpath(path.parent)) != path.parent:
            raise BlobError(ReasonCode.BLOB_NOT_REGULAR_FILE, "a folder on its way is a link")
        return path


_CANCELLED = "cancelled"  # ledger folders of their own, beside the stages'
_ERASED = "erased"


def _sync_folder(folder: Path) -> None:
    """Makes a new name in ``folder`` durable (the entry, not only the file's bytes)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StageLedger:
    """What each stage has finished, per job: the stage's output event (or veto), by job id.

    The runner writes an entry only after the stage's events are acknowledged, and skips an
    event whose job already has one. That makes redelivery (at-least-once) harmless: no
    second video, no second terminal state. Review reads a job's record from it too.
    """

    def __init__(self, store: BlobStore) -> None:
        self._store = store

    def get(self, stage: str, job_id: str) -> bytes | None:
        return self._store.read_key(self._key(stage, job_id))

    def put(self, stage: str, job_id: str, record: bytes) -> None:
        self._store.write_key(self._key(stage, job_id), record)

    def mark_cancelled(self, job_id: str) -> None:
        """Records that the job's creator cancelled it: no stage works on it after this."""
        self.put(_CANCELLED, job_id, b"cancelled")

    def is_cancelled(self, job_id: str) -> bool:
        return self.get(_CANCELLED, job_id) is not None

    def mark_erased(self, job_id: str, record: bytes) -> None:
        """Records that the job was erased (alive/erasure.py): no stage works on it again,
        whatever event still names it. The mark outlives the job's data and holds no
        personal data (``record``: when, and the erasure's id)."""
        self.put(_ERASED, job_id, record)

    def is_erased(self, job_id: str) -> bool:
        return self.get(_ERASED, job_id) is not None

    def entries(self, job_id: str) -> list[str]:
        """The keys of the job's ledger entries (every stage's, its cancellation, its
        reports), not its erasure mark: what an erasure deletes."""
        stages = [spec.name for spec in PIPELINE] + [_CANCELLED]
        keys = [self._key(stage, job_id) for stage in stages]
        return keys + self._store.list_keys(f"ledger/reports/{job_id}/")

    @staticmethod
    def valid_job_id(job_id: str) -> bool:
        return valid_id(job_id)

    def _key(self, stage: str, job_id: str) -> str:
        if not self.valid_job_id(job_id):
            raise BlobError(ReasonCode.INVALID_JOB_ID, f"invalid job id {job_id!r}")
        return f"ledger/{stage}/{job_id}"
