"""Object keys, types and upload order of a stored ladder."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube_transcode_worker.errors import PermanentJobError
from kube_transcode_worker.store import (
    cache_control,
    content_type,
    object_key,
    plan_uploads,
    stale_keys,
    upload_waves,
)

pytestmark = pytest.mark.unit


def test_keys_are_the_relative_paths_under_the_prefix() -> None:
    assert object_key("videos/trailer", "720p/seg_00001.ts") == "videos/trailer/720p/seg_00001.ts"
    assert object_key("/videos/trailer/", "master.m3u8") == "videos/trailer/master.m3u8"


@pytest.mark.parametrize(
    ("prefix", "relative"),
    [
        ("job", "../other/master.m3u8"),
        ("job", "720p/../../x.ts"),
        ("job", "/etc/passwd"),
        ("job", "./x.ts"),
        ("job", "a\\..\\b"),
        ("job", ""),
        ("../job", "x.ts"),
        ("", "x.ts"),
        ("a//b", "x.ts"),
    ],
)
def test_keys_never_escape_the_prefix(prefix: str, relative: str) -> None:
    with pytest.raises(ValueError, match=r"prefix|relative|'\.'"):
        object_key(prefix, relative)


@pytest.mark.parametrize(
    ("name", "ctype", "cache"),
    [
        ("master.m3u8", "application/vnd.apple.mpegurl", "no-cache"),
        ("720p/index.m3u8", "application/vnd.apple.mpegurl", "no-cache"),
        ("720p/seg_00001.ts", "video/mp2t", "public, max-age=86400"),
        ("720p/init.mp4", "video/mp4", "public, max-age=86400"),
        ("720p/seg_00001.m4s", "video/iso.segment", "public, max-age=86400"),
        ("notes.bin", "application/octet-stream", "public, max-age=86400"),
    ],
)
def test_content_type_and_cache_control(name: str, ctype: str, cache: str) -> None:
    assert (content_type(name), cache_control(name)) == (ctype, cache)


def _ladder(folder: Path) -> Path:
    for name in ("360p", "audio"):
        (folder / name).mkdir(parents=True)
        (folder / name / "seg_00000.ts").write_bytes(b"x")
        (folder / name / "index.m3u8").write_text("#EXTM3U\n")
    (folder / "master.m3u8").write_text("#EXTM3U\n")
    return folder


def test_segments_then_media_playlists_then_master_alone(tmp_path: Path) -> None:
    uploads = plan_uploads(_ladder(tmp_path), "job")
    waves = [[u.key for u in wave] for wave in upload_waves(uploads, "job/master.m3u8")]
    assert waves == [
        ["job/360p/seg_00000.ts", "job/audio/seg_00000.ts"],
        ["job/360p/index.m3u8", "job/audio/index.m3u8"],
        ["job/master.m3u8"],
    ]


def test_hidden_files_and_symlinks_in_a_ladder_are_refused(tmp_path: Path) -> None:
    folder = _ladder(tmp_path / "a")
    (folder / "360p" / ".seg.partial").write_bytes(b"x")
    with pytest.raises(PermanentJobError, match="hidden file"):
        plan_uploads(folder, "job")
    folder = _ladder(tmp_path / "b")
    (folder / "360p" / "leak.ts").symlink_to("/etc/hostname")
    with pytest.raises(PermanentJobError, match="symlink"):
        plan_uploads(folder, "job")


def test_stale_keys_are_those_the_new_ladder_lacks() -> None:
    old = ["j/master.m3u8", "j/720p/index.m3u8", "j/720p/seg_00000.ts", "j/360p/seg_00003.ts"]
    new = ["j/master.m3u8", "j/360p/index.m3u8", "j/360p/seg_00000.ts"]
    assert stale_keys(old, new) == [
        "j/360p/seg_00003.ts",
        "j/720p/index.m3u8",
        "j/720p/seg_00000.ts",
    ]
