"""Publish a finished ladder folder to s3://<bucket>/<prefix>/, master playlist last.

Keys are the folder's relative paths under the job's prefix, so a redelivered job overwrites
its own objects instead of adding copies; no key can leave the prefix.

Order, so a player never sees a playlist before what it names:
1. segments (concurrently), 2. media playlists, 3. the master playlist, only once everything
else is stored and the caller's last check (is the job still wanted?) passed, 4. removal of
objects under the prefix that the new ladder does not have (a rerun with another ladder
leaves no orphans). Removal comes after the new master, which no longer names them; a
player still on an old variant may then miss a segment, which a rerun of a finished VOD job
accepts.

Every request is retried with full-jitter exponential backoff on 5xx, throttling and
connection errors; 4xx other than throttling fails at once.

Caching: segments `max-age=86400` (a day, not `immutable`: a rerun writes new content under
the same names), playlists `no-cache` (clients revalidate, so a rerun shows at once).
Uploads start after the encode; overlapping them with it would need a watcher that knows
when FFmpeg has finished a segment, for a gain that is small next to the encode itself.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from kube_transcode.messages import (
    InvalidMessageError,
    JobCancel,
    cancelled_marker_key,
    decode_cancel,
    validate_prefix,
)
from kube_transcode_worker.errors import JobCancelledError, PermanentJobError, TransientJobError
from kube_transcode_worker.hls import MASTER_PLAYLIST_NAME

log = logging.getLogger(__name__)
T = TypeVar("T")

CONTENT_TYPES: Final = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
    ".aac": "audio/aac",
    ".vtt": "text/vtt",
    ".jpg": "image/jpeg",
}
SEGMENT_CACHE_CONTROL: Final = "public, max-age=86400"
PLAYLIST_CACHE_CONTROL: Final = "no-cache"
_THROTTLING: Final = frozenset({"SlowDown", "Throttling", "RequestTimeout", "RequestTimeTooSkewed"})


@dataclass(frozen=True)
class Upload:
    path: Path
    key: str
    content_type: str
    cache_control: str

    @property
    def is_playlist(self) -> bool:
        return self.key.endswith(".m3u8")


@dataclass(frozen=True)
class StoreResult:
    keys: tuple[str, ...]
    bytes_uploaded: int
    removed: tuple[str, ...]
    seconds: float


def object_key(prefix: str, relative: str) -> str:
    """prefix/relative, refusing anything that would name an object outside the prefix."""
    prefix = validate_prefix(prefix.strip("/"))
    if not relative or relative.startswith("/") or "\\" in relative:
        raise ValueError(f"not a relative object path: {relative!r}")
    if any(part in ("", ".", "..") for part in relative.split("/")):
        raise ValueError(f"object path must not contain empty, '.' or '..' parts: {relative!r}")
    return f"{prefix}/{relative}"


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")


def cache_control(name: str) -> str:
    return PLAYLIST_CACHE_CONTROL if name.endswith(".m3u8") else SEGMENT_CACHE_CONTROL


def plan_uploads(folder: Path, prefix: str) -> list[Upload]:
    """Every file under folder, sorted by key; symlinks and hidden files are refused."""
    uploads = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise PermanentJobError("UnexpectedOutput", f"{path} is a symlink")
        if not path.is_file():
            continue
        relative = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in PurePosixPath(relative).parts):
            raise PermanentJobError("UnexpectedOutput", f"hidden file {relative} in the ladder")
        uploads.append(
            Upload(
                path, object_key(prefix, relative), content_type(relative), cache_control(relative)
            )
        )
    return uploads


def upload_waves(uploads: Iterable[Upload], master_key: str) -> list[list[Upload]]:
    """Segments, then media playlists, then the master playlist alone."""
    segments: list[Upload] = []
    playlists: list[Upload] = []
    master: list[Upload] = []
    for upload in uploads:
        if upload.key == master_key:
            master.append(upload)
        elif upload.is_playlist:
            playlists.append(upload)
        else:
            segments.append(upload)
    return [wave for wave in (segments, playlists, master) if wave]


def stale_keys(existing: Iterable[str], wanted: Iterable[str]) -> list[str]:
    return sorted(set(existing) - set(wanted))


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return status >= 500 or code in _THROTTLING
    return isinstance(exc, BotoCoreError | OSError)


class LadderStore:
    def __init__(
        self,
        client: Any,
        *,
        concurrency: int = 8,
        attempts: int = 5,
        backoff_base_seconds: float = 0.2,
        backoff_max_seconds: float = 10.0,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        self.concurrency = concurrency
        self.attempts = attempts
        self.backoff_base = backoff_base_seconds
        self.backoff_max = backoff_max_seconds
        self.on_bytes = on_bytes or (lambda _n: None)

    def publish(
        self,
        folder: Path,
        bucket: str,
        prefix: str,
        cancel: threading.Event,
        before_master: Callable[[], None] = lambda: None,
        stored_before: Iterable[str] = (),
    ) -> StoreResult:
        """Store the ladder; `before_master` may raise to keep the master playlist unwritten.

        `stored_before`: keys of this ladder already stored (a chunked job's segments, put by
        its parts), which the removal of stale objects keeps.
        """
        started = time.monotonic()
        prefix = validate_prefix(prefix.strip("/"))
        uploads = plan_uploads(folder, prefix)
        master_key = object_key(prefix, MASTER_PLAYLIST_NAME)
        if not any(u.key == master_key for u in uploads):
            raise PermanentJobError("UnexpectedOutput", f"no {MASTER_PLAYLIST_NAME} in {folder}")
        uploaded = 0
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="upload") as pool:
            for wave in upload_waves(uploads, master_key):
                if wave[0].key == master_key:
                    before_master()
                uploaded += self._wave(pool, wave, bucket, cancel)
        wanted = [u.key for u in uploads]
        removed = stale_keys(self._list(bucket, prefix), [*wanted, *stored_before])
        self._delete(bucket, removed)
        return StoreResult(tuple(wanted), uploaded, tuple(removed), time.monotonic() - started)

    def put_segments(
        self, folder: Path, bucket: str, prefix: str, cancel: threading.Event
    ) -> StoreResult:
        """Store the segments under folder (not its playlists) at their ladder keys."""
        started = time.monotonic()
        uploads = [u for u in plan_uploads(folder, prefix) if not u.is_playlist]
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="upload") as pool:
            uploaded = self._wave(pool, uploads, bucket, cancel) if uploads else 0
        keys = tuple(u.key for u in uploads)
        return StoreResult(keys, uploaded, (), time.monotonic() - started)

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        """Every key under prefix/ (prefix given without its trailing slash)."""
        return self._list(bucket, prefix.rstrip("/"))

    def delete_keys(self, bucket: str, keys: list[str]) -> None:
        self._delete(bucket, keys)

    def read_object(self, bucket: str, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""

        def read() -> bytes | None:
            try:
                body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise
            return body

        return self.retrying(f"reading s3://{bucket}/{key}", read)

    def object_size(self, bucket: str, key: str) -> int | None:
        """The object's size, or None when there is no such object."""

        def head() -> int | None:
            try:
                size: int = self.client.head_object(Bucket=bucket, Key=key)["ContentLength"]
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise
            return size

        return self.retrying(f"looking up s3://{bucket}/{key}", head)

    def cancel_marker(self, bucket: str, uid: str) -> JobCancel | None:
        """The operator's cancel marker of job `uid` in `bucket`, if there is a readable one."""
        key = cancelled_marker_key(uid)
        body = self.read_object(bucket, key)
        if body is None:
            return None
        try:
            return decode_cancel(body)
        except InvalidMessageError as exc:  # the broadcast still reaches running attempts
            log.warning("ignoring an unreadable cancel marker s3://%s/%s: %s", bucket, key, exc)
            return None

    def _wave(
        self, pool: ThreadPoolExecutor, wave: list[Upload], bucket: str, cancel: threading.Event
    ) -> int:
        futures = [pool.submit(self._put, upload, bucket, cancel) for upload in wave]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            future.result()  # raises the first failure
        return sum(f.result() for f in futures)

    def _put(self, upload: Upload, bucket: str, cancel: threading.Event) -> int:
        def put() -> int:
            if cancel.is_set():
                raise JobCancelledError("upload cancelled")
            with upload.path.open("rb") as body:
                self.client.put_object(
                    Bucket=bucket,
                    Key=upload.key,
                    Body=body,
                    ContentType=upload.content_type,
                    CacheControl=upload.cache_control,
                )
            size = upload.path.stat().st_size
            self.on_bytes(size)
            return size

        return self.retrying(f"upload of s3://{bucket}/{upload.key}", put)

    def _list(self, bucket: str, prefix: str) -> list[str]:
        def list_keys() -> list[str]:
            keys: list[str] = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/"):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
            return keys

        return self.retrying(f"listing s3://{bucket}/{prefix}/", list_keys)

    def _delete(self, bucket: str, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]

            def delete(batch: list[str] = batch) -> None:
                response = self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
                if response.get("Errors"):
                    first = response["Errors"][0]
                    raise TransientJobError(
                        "StorageUnavailable",
                        f"cannot delete {first.get('Key')}: {first.get('Code')}",
                    )

            self.retrying(f"removing {len(batch)} objects", delete)
            log.info("removed %d objects", len(batch))

    def retrying(self, what: str, call: Callable[[], T]) -> T:
        """`call`, retried with full-jitter backoff on transient S3 errors."""
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except (ClientError, BotoCoreError, OSError) as exc:
                if not is_transient(exc):
                    raise PermanentJobError("StorageRejected", f"{what}: {exc}") from None
                if attempt == self.attempts:
                    raise TransientJobError(
                        "StorageUnavailable", f"{what} failed {attempt} times: {exc}"
                    ) from None
                cap = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
                delay = random.uniform(0, cap)  # noqa: S311 - jitter, not crypto
                log.warning("%s failed (%s); retry %d in %.2f s", what, exc, attempt, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")
