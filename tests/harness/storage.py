"""Objects in S3 (MinIO here) as tests put, list, remove and read them; a stored ladder checked
the way a player reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kube_transcode_worker.authoring import check_ladder
from kube_transcode_worker.playlists import parse_master_playlist, parse_media_playlist
from tests.harness.media import assert_authoring_rules


def upload_source(s3: Any, bucket: str, path: Path, key: str | None = None) -> str:
    key = key or f"sources/{path.name}"
    s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def object_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every key that starts with prefix, sorted (give a folder as "name/")."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(keys)


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0))


def delete_objects(s3: Any, bucket: str, prefix: str) -> None:
    """Every object whose key starts with prefix ("" for the whole bucket)."""
    keys = object_keys(s3, bucket, prefix)
    for start in range(0, len(keys), 1000):
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def download_folder(s3: Any, bucket: str, prefix: str, dest: Path) -> list[str]:
    """Every object under prefix/ into dest (keys relative to the prefix); returns them."""
    relative = []
    for key in object_keys(s3, bucket, f"{prefix}/"):
        rel = key.removeprefix(f"{prefix}/")
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(dest / rel))
        relative.append(rel)
    return sorted(relative)


def check_stored_ladder(s3: Any, bucket: str, prefix: str) -> list[str]:
    """What a player does: master, every variant's playlist, every segment; returns the keys.

    The ladder is then held to Apple's HLS authoring rules, measured on the stored bytes."""
    keys = object_keys(s3, bucket, f"{prefix}/")

    def text(key: str) -> str:
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["ContentType"] == "application/vnd.apple.mpegurl", key
        return str(got["Body"].read().decode())

    master = parse_master_playlist(text(f"{prefix}/master.m3u8"))
    uris = [v.uri for v in master.variants] + [m["URI"] for m in master.media]
    # Every video rendition has its I-frame playlist, into the same segments.
    assert len(master.iframe_streams) == len(master.variants)
    uris += [stream["URI"] for stream in master.iframe_streams]
    assert len(master.variants) == 2
    referenced = {f"{prefix}/master.m3u8"}
    for uri in uris:
        referenced.add(f"{prefix}/{uri}")
        playlist = parse_media_playlist(text(f"{prefix}/{uri}"))
        assert playlist.ended and playlist.segments
        folder = uri.rsplit("/", 1)[0]
        if playlist.init_uri is not None:
            init = f"{prefix}/{folder}/{playlist.init_uri}"
            head = s3.head_object(Bucket=bucket, Key=init)
            assert head["ContentType"] == "video/mp4" and head["ContentLength"] > 0, init
            referenced.add(init)
        for segment in playlist.segments:
            key = f"{prefix}/{folder}/{segment.uri}"
            head = s3.head_object(Bucket=bucket, Key=key)
            # MPEG-TS, or an fMP4 media segment (RFC 8216's and CMAF's media type).
            expected = "video/iso.segment" if key.endswith(".m4s") else "video/mp2t"
            assert head["ContentType"] == expected and head["ContentLength"] > 0, key
            referenced.add(key)
    referenced |= thumbnail_keys(s3, bucket, prefix, keys)
    assert set(keys) == referenced, "objects the ladder does not name, or names and lacks"
    check_stored_authoring(s3, bucket, prefix)
    return keys


def thumbnail_keys(s3: Any, bucket: str, prefix: str, keys: list[str]) -> set[str]:
    """The poster and the storyboard (its VTT and the sheets its cues name), where stored."""
    found = set()
    poster = f"{prefix}/poster.jpg"
    if poster in keys:
        assert s3.head_object(Bucket=bucket, Key=poster)["ContentType"] == "image/jpeg"
        found.add(poster)
    vtt = f"{prefix}/storyboard/storyboard.vtt"
    if vtt in keys:
        got = s3.get_object(Bucket=bucket, Key=vtt)
        assert got["ContentType"] == "text/vtt"
        found.add(vtt)
        for line in got["Body"].read().decode().splitlines():
            if "#xywh=" in line:
                found.add(f"{prefix}/storyboard/{line.split('#', 1)[0]}")
    return found


def check_stored_authoring(s3: Any, bucket: str, prefix: str) -> None:
    """The ladder under prefix/ follows Apple's HLS authoring rules, measured on its objects."""
    stored = {
        key.removeprefix(f"{prefix}/"): s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        for key in object_keys(s3, bucket, f"{prefix}/")
    }
    assert_authoring_rules(check_ladder(stored))
