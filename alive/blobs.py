"""Blob storage for photos, videos and the stage ledger.

Events carry ``BlobRef``s, never media. ``BlobStore`` is the interface; ``LocalBlobStore``
keeps blobs as files under one root directory (the embedded default). An S3 store fits the
same interface: keys map to object keys, ``local_copy`` downloads to a temporary file.
Only the local store exists so far.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import unquote, urlparse

from alive.jobs import valid_id
from alive.v1.events_pb2 import BlobRef


class BlobError(Exception):
    """A blob is missing, outside the store, or does not match its digest."""


class BlobStore(ABC):
    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str) -> BlobRef: ...

    @abstractmethod
    def put_file(self, key: str, path: Path, content_type: str) -> BlobRef: ...

    @abstractmethod
    def get_bytes(self, ref: BlobRef) -> bytes:
        """The blob's bytes, checked against ``ref.sha256`` when the ref has one."""

    @abstractmethod
    def local_path(self, ref: BlobRef) -> Path:
        """A local file with the blob's bytes (the blob itself for the local store)."""

    @abstractmethod
    def key_for(self, uri: str) -> str | None:
        """The key of the blob ``uri`` names, or None when it is not in this store."""

    def owns(self, uri: str) -> bool:
        return self.key_for(uri) is not None

    @abstractmethod
    def read_key(self, key: str) -> bytes | None: ...

    @abstractmethod
    def write_key(self, key: str, data: bytes) -> None: ...


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root``; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> BlobRef:
        """Write-once: a key keeps its first bytes. A redelivered job (at-least-once) then
        refers to the file its first run sent on, even where a step is not deterministic
        (a C2PA signature), so a later check of the sha256 still holds."""
        path = self._path_for_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._temporary(path, data)
        try:
            os.link(tmp, path)  # atomic create-if-absent
        except FileExistsError:
            data = path.read_bytes()
        finally:
            os.unlink(tmp)
        return BlobRef(
            uri=path.as_uri(),
            sha256=hashlib.sha256(data).hexdigest(),
            content_type=content_type,
            size_bytes=len(data),
        )

    def put_file(self, key: str, path: Path, content_type: str) -> BlobRef:
        return self.put_bytes(key, path.read_bytes(), content_type)

    def get_bytes(self, ref: BlobRef) -> bytes:
        path = self.local_path(ref)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise BlobError(f"blob {ref.uri} does not exist") from exc
        if ref.sha256 and hashlib.sha256(data).hexdigest() != ref.sha256:
            raise BlobError(f"blob {ref.uri} does not match its sha256")
        return data

    def local_path(self, ref: BlobRef) -> Path:
        key = self.key_for(ref.uri)
        if key is None:
            raise BlobError(f"{ref.uri!r} is not in this blob store")
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
            return self._path_for_key(key).read_bytes()
        except FileNotFoundError:
            return None

    def write_key(self, key: str, data: bytes) -> None:
        path = self._path_for_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._temporary(path, data), path)

    @staticmethod
    def _temporary(path: Path, data: bytes) -> str:
        """A temporary file beside ``path`` holding ``data`` (then renamed or linked)."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return tmp

    def _path_for_key(self, key: str) -> Path:
        path = Path(os.path.normpath(self.root / key))
        if not path.is_relative_to(self.root) or path == self.root:
            raise BlobError(f"blob key {key!r} escapes the store")
        return path


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

    @staticmethod
    def valid_job_id(job_id: str) -> bool:
        return valid_id(job_id)

    def _key(self, stage: str, job_id: str) -> str:
        if not self.valid_job_id(job_id):
            raise BlobError(f"invalid job id {job_id!r}")
        return f"ledger/{stage}/{job_id}"
