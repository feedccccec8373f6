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
    def owns(self, uri: str) -> bool:
        """Whether ``uri`` names a blob inside this store (callers may name no other)."""

    @abstractmethod
    def read_key(self, key: str) -> bytes | None: ...

    @abstractmethod
    def write_key(self, key: str, data: bytes) -> None: ...


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root``; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def uri_for(self, key: str) -> str:
        return self._path_for_key(key).as_uri()

    def put_bytes(self, key: str, data: bytes, content_type: str) -> BlobRef:
        self.write_key(key, data)
        return BlobRef(
            uri=self.uri_for(key),
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
        if not self.owns(ref.uri):
            raise BlobError(f"{ref.uri!r} is not in this blob store")
        return Path(ref.uri.removeprefix("file://"))

    def owns(self, uri: str) -> bool:
        if not uri.startswith("file:///"):
            return False
        path = Path(os.path.normpath(uri.removeprefix("file://")))
        return path.is_relative_to(self.root)

    def read_key(self, key: str) -> bytes | None:
        try:
            return self._path_for_key(key).read_bytes()
        except FileNotFoundError:
            return None

    def write_key(self, key: str, data: bytes) -> None:
        path = self._path_for_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

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
    def _key(stage: str, job_id: str) -> str:
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise BlobError(f"invalid job id {job_id!r}")
        return f"ledger/{stage}/{job_id}"
