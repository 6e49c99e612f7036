"""A local file into the sources bucket: content-addressed, multipart, resumable.

The key is `uploads/<first 16 hex digits of the SHA-256>/<file name>`, so a second run with the
same file finds what the first one left: the object itself (same size, and the digest in its
metadata: nothing is sent), or its unfinished multipart upload (only the missing parts are
sent). Part sizes follow from the file's size alone, so both runs plan the same parts.
"""

from __future__ import annotations

import hashlib
import math
import mimetypes
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from pydantic import Field

from kube_transcode_worker.settings import StorageSettings
from kube_transcode_worker.terminal import ProgressReporter

MIB = 1024**2
PART_SIZE = 8 * MIB  # S3's minimum is 5 MiB for every part but the last
MAX_PARTS = 10_000  # S3's limit per multipart upload
DIGEST_METADATA = "sha256"
KEY_PREFIX = "uploads"
HASH_CHUNK = MIB


class SubmitSettings(StorageSettings):
    """The worker's storage settings (KT_S3_*) plus where `submit` puts local files."""

    sources_bucket: str = Field(default="sources", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class Part:
    number: int  # 1-based, as S3 counts
    offset: int
    size: int


@dataclass(frozen=True)
class UploadResult:
    url: str
    size: int
    sent_bytes: int
    sent_parts: int
    kept_parts: int  # found in an unfinished upload and not sent again
    already_there: bool  # the whole object existed: nothing sent


def part_size_for(total: int) -> int:
    """PART_SIZE, doubled until the file fits in MAX_PARTS parts."""
    size = PART_SIZE
    while math.ceil(total / size) > MAX_PARTS:
        size *= 2
    return size


def plan_parts(total: int, part_size: int) -> list[Part]:
    """The parts of a file of `total` bytes; an empty file is one empty part."""
    if total == 0:
        return [Part(1, 0, 0)]
    return [
        Part(index + 1, offset, min(part_size, total - offset))
        for index, offset in enumerate(range(0, total, part_size))
    ]


def missing_parts(planned: Iterable[Part], uploaded: Mapping[int, int]) -> list[Part]:
    """Parts still to send: not uploaded yet, or uploaded with another size (another plan)."""
    return [part for part in planned if uploaded.get(part.number) != part.size]


def object_key(digest: str, file_name: str) -> str:
    """uploads/<digest prefix>/<name>, the name reduced to characters safe in a URL."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", file_name).strip("._") or "source"
    return f"{KEY_PREFIX}/{digest[:16]}/{safe}"


def file_digest(path: Path, progress: ProgressReporter) -> str:
    total = path.stat().st_size
    digest, done = hashlib.sha256(), 0
    progress.update_bytes("hashing", 0, total)
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            progress.update_bytes("hashing", done, total)
    return digest.hexdigest()


class SourceUploader:
    """Uploads into one bucket, reporting bytes; `limit_rate` (bytes/s) spares a shared link."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        progress: ProgressReporter,
        *,
        limit_rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.s3, self.bucket, self.progress = s3, bucket, progress
        self.limit_rate, self.clock, self.sleep = limit_rate, clock, sleep

    def upload(self, path: Path) -> UploadResult:
        total = path.stat().st_size
        digest = file_digest(path, self.progress)
        key = object_key(digest, path.name)
        url = f"s3://{self.bucket}/{key}"
        if self._already_there(key, total, digest):
            return UploadResult(url, total, 0, 0, 0, already_there=True)

        # Hand-written: boto3's transfer manager cannot resume an interrupted multipart upload.
        upload_id, uploaded = self._unfinished_upload(key)
        if upload_id is None:
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                ContentType=content_type,
                Metadata={DIGEST_METADATA: digest},
            )["UploadId"]
        planned = plan_parts(total, part_size_for(total))
        to_send = missing_parts(planned, {number: size for number, (size, _) in uploaded.items()})
        etags = {number: etag for number, (_, etag) in uploaded.items()}
        done = total - sum(part.size for part in to_send)
        sent, started = 0, self.clock()
        self.progress.update_bytes("uploading", done, total)
        with path.open("rb") as file:
            for part in to_send:
                file.seek(part.offset)
                body = file.read(part.size)
                response = self.s3.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=part.number,
                    Body=body,
                )
                etags[part.number] = response["ETag"]
                sent += part.size
                done += part.size
                self.progress.update_bytes("uploading", done, total)
                self._keep_to_rate(sent, started)
        self.s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": p.number, "ETag": etags[p.number]} for p in planned]
            },
        )
        return UploadResult(
            url, total, sent, len(to_send), len(planned) - len(to_send), already_there=False
        )

    def _already_there(self, key: str, size: int, digest: str) -> bool:
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        metadata = head.get("Metadata", {})
        return bool(head["ContentLength"] == size and metadata.get(DIGEST_METADATA) == digest)

    def _unfinished_upload(self, key: str) -> tuple[str | None, dict[int, tuple[int, str]]]:
        """The newest unfinished upload of `key` and its parts (number -> size, ETag)."""
        uploads = [
            upload
            # The whole key as the prefix: MinIO lists the uploads of one key, never of a prefix.
            for page in self.s3.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=key
            )
            for upload in page.get("Uploads", [])
            if upload["Key"] == key
        ]
        if not uploads:
            return None, {}
        newest = max(uploads, key=lambda upload: upload["Initiated"])
        parts = {
            part["PartNumber"]: (part["Size"], part["ETag"])
            for page in self.s3.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=key, UploadId=newest["UploadId"]
            )
            for part in page.get("Parts", [])
        }
        return newest["UploadId"], parts

    def _keep_to_rate(self, sent: int, started: float) -> None:
        if self.limit_rate is None:
            return
        ahead = sent / self.limit_rate - (self.clock() - started)
        if ahead > 0:
            self.sleep(ahead)
