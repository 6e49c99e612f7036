"""A chunked job's work area in S3: the staged source, encode markers and part manifests.

Layout, under `messages.work_area_prefix(uid, generation)` in the job's output bucket:
- `source`: the staged copy of an http(s) source (an s3:// source is read where it is);
- `starts/<part>/<time>-<worker>`: one marker per encode of a part begun, written before
  FFmpeg starts, so a part encoded again (its worker was killed or preempted) is counted;
- `thumbs/poster.jpg`, `thumbs/frames/<n>.jpg`: the poster and storyboard thumbnails the
  video chunks made, tiled into sheets by the assembly;
- `parts/<part>.json`: the part's manifest, written after its segments and thumbnails: the
  proof that the part is stored and will not be encoded again, by anyone, after any restart.
Once the ladder is assembled the generation's area is removed and `<generation>.done` left
beside it, so a part delivered again after that (a duplicate) is dropped without work.

The stored objects are the truth of a chunked job's progress: counts are listed from them,
so an event applied twice, late or after an operator restart reports the same thing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from boto3.s3.transfer import TransferConfig
from pydantic import ValidationError

from kube_transcode.chunks import ChunkCounts
from kube_transcode.messages import JobRef, StagedSource, work_area_prefix
from kube_transcode.thumbnails import POSTER_NAME
from kube_transcode_worker.assemble import PartManifest
from kube_transcode_worker.errors import JobCancelledError, PermanentJobError
from kube_transcode_worker.store import LadderStore
from kube_transcode_worker.thumbnails import FRAMES_DIR, frame_name, produced_frames

log = logging.getLogger(__name__)

STAGED_SOURCE_NAME: Final = "source"
# Long enough for a part that waited in the queue behind a long backlog and then encodes.
PRESIGNED_URL_SECONDS: Final = 6 * 3600
_MULTIPART: Final = TransferConfig(multipart_threshold=64 * 2**20, multipart_chunksize=64 * 2**20)


class WorkArea:
    def __init__(self, store: LadderStore, bucket: str, job: JobRef) -> None:
        self._store = store
        self._client = store.client
        self.bucket = bucket
        self.job = job
        self.prefix = work_area_prefix(job.uid, job.generation)
        # Error messages name the user's source instead of these (they carry a signature).
        self.presigned_urls_given: list[str] = []

    def stage(self, local: Path, cancel: threading.Event) -> StagedSource:
        """Copy a fetched source into the work area once (a rerun finds it there)."""
        key = self.prefix + STAGED_SOURCE_NAME
        size = local.stat().st_size
        if self._size_of(key) == size:
            return StagedSource(bucket=self.bucket, key=key)

        def progress(_sent: int) -> None:
            if cancel.is_set():
                raise JobCancelledError("staging cancelled")

        self._store.retrying(
            f"staging the source in s3://{self.bucket}/{key}",
            lambda: self._client.upload_file(
                str(local), self.bucket, key, Config=_MULTIPART, Callback=progress
            ),
        )
        return StagedSource(bucket=self.bucket, key=key)

    def presigned_url(self, staged: StagedSource) -> str:
        url: str = self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": staged.bucket, "Key": staged.key},
            ExpiresIn=PRESIGNED_URL_SECONDS,
        )
        self.presigned_urls_given.append(url)
        return url

    def mark_started(self, part: str, worker: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        self._put(f"{self.prefix}starts/{part}/{stamp}-{worker}", b"")

    def store_thumbnails(self, folder: Path, cancel: threading.Event) -> dict[str, Any]:
        """A part's poster and thumbnails (a run's thumbs folder) into the work area; what its
        manifest lists of them."""
        poster = folder / POSTER_NAME
        frames = produced_frames(folder)
        files = [(folder / FRAMES_DIR / frame_name(n), self._frame_key(n)) for n in frames]
        if poster.is_file():
            files.append((poster, self._poster_key))
        for path, key in files:
            if cancel.is_set():
                raise JobCancelledError("upload cancelled")
            self._put(key, path.read_bytes())
        return {"thumbnails": tuple(frames), "poster": poster.is_file()}

    def fetch_thumbnails(self, manifests: Mapping[str, PartManifest], folder: Path) -> None:
        """Every part's thumbnails (and the poster) from the work area into a thumbs folder."""
        (folder / FRAMES_DIR).mkdir(parents=True, exist_ok=True)
        wanted = [
            (self._frame_key(n), folder / FRAMES_DIR / frame_name(n))
            for manifest in manifests.values()
            for n in manifest.thumbnails
        ]
        if any(manifest.poster for manifest in manifests.values()):
            wanted.append((self._poster_key, folder / POSTER_NAME))
        for key, path in wanted:
            body = self._get(key)
            if body is None:
                raise PermanentJobError("CorruptWorkArea", f"s3://{self.bucket}/{key} is missing")
            path.write_bytes(body)

    @property
    def _poster_key(self) -> str:
        return f"{self.prefix}thumbs/{POSTER_NAME}"

    def _frame_key(self, index: int) -> str:
        return f"{self.prefix}thumbs/{FRAMES_DIR}/{frame_name(index)}"

    def store_manifest(self, manifest: PartManifest) -> None:
        self._put(self._manifest_key(manifest.task), manifest.model_dump_json().encode())

    def manifest(self, part: str) -> PartManifest | None:
        body = self._get(self._manifest_key(part))
        return None if body is None else self._parse(part, body)

    def manifests(self) -> dict[str, PartManifest]:
        found: dict[str, PartManifest] = {}
        for key in self._keys("parts/"):
            part = key.rsplit("/", 1)[-1].removesuffix(".json")
            body = self._get(key)
            if body is not None:
                found[part] = self._parse(part, body)
        return found

    def counts(self, total: int) -> ChunkCounts:
        """Parts stored, and encodes begun beyond one per part, as the objects show now."""
        stored = {k.removesuffix(".json") for k in self._keys("parts/", relative=True)}
        starts = self._keys("starts/", relative=True)
        started_parts = {key.split("/", 1)[0] for key in starts}
        return ChunkCounts(
            total=total,
            done=min(total, len(stored)),
            redone=max(0, len(starts) - len(started_parts)),
        )

    def finished(self) -> bool:
        return self._get(self._done_key) is not None

    def remove_generations_up_to_own(self) -> None:
        """The work areas of this job's generation and older ones (a newer one may be live)."""
        everything = self._store.list_keys(self.bucket, work_area_prefix(self.job.uid))
        base = work_area_prefix(self.job.uid)
        doomed = [
            key
            for key in everything
            if key.removeprefix(base).split("/", 1)[0].isdigit()
            and int(key.removeprefix(base).split("/", 1)[0]) <= self.job.generation
        ]
        self._store.delete_keys(self.bucket, doomed)
        self._put(self._done_key, b"")

    @property
    def _done_key(self) -> str:
        return f"{work_area_prefix(self.job.uid)}{self.job.generation}.done"

    def _manifest_key(self, part: str) -> str:
        return f"{self.prefix}parts/{part}.json"

    def _keys(self, under: str, *, relative: bool = False) -> list[str]:
        keys = self._store.list_keys(self.bucket, self.prefix + under)
        if relative:
            return [key.removeprefix(self.prefix + under) for key in keys]
        return keys

    def _parse(self, part: str, body: bytes) -> PartManifest:
        try:
            return PartManifest.model_validate_json(body)
        except ValidationError as exc:
            raise PermanentJobError(
                "CorruptWorkArea", f"the stored manifest of {part} is unreadable: {exc}"
            ) from None

    def _put(self, key: str, body: bytes) -> None:
        self._store.retrying(
            f"writing s3://{self.bucket}/{key}",
            lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=body),
        )

    def _get(self, key: str) -> bytes | None:
        return self._store.read_object(self.bucket, key)

    def _size_of(self, key: str) -> int | None:
        return self._store.object_size(self.bucket, key)
