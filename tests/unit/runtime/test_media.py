from __future__ import annotations

from pathlib import Path

import pytest

from tessera.runtime.errors import InvalidArgument, PermissionDenied
from tessera.runtime.media import resolve_media_path


def test_resolves_only_under_roots(tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    video = root / "a.mp4"
    video.write_bytes(b"x")
    assert resolve_media_path(str(video), [root], field="video.uri") == video
    assert resolve_media_path(f"file://{video}", [root], field="video.uri") == video
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret")
    for uri in (str(outside), f"{root}/../secret.txt", "/etc/passwd"):
        with pytest.raises(PermissionDenied) as caught:
            resolve_media_path(uri, [root], field="video.uri")
        assert caught.value.field == "video.uri" and "top secret" not in caught.value.message


def test_symlink_escape_is_denied(tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    (tmp_path / "outside.mp4").write_bytes(b"x")
    (root / "link.mp4").symlink_to(tmp_path / "outside.mp4")
    with pytest.raises(PermissionDenied):
        resolve_media_path(str(root / "link.mp4"), [root], field="video.uri")


def test_bad_uris(tmp_path: Path) -> None:
    with pytest.raises(PermissionDenied, match="scheme"):
        resolve_media_path("http://example.com/a.mp4", [tmp_path], field="video.uri")
    with pytest.raises(InvalidArgument):
        resolve_media_path("  ", [tmp_path], field="video.uri")
    with pytest.raises(InvalidArgument, match="no readable file"):
        resolve_media_path(str(tmp_path / "missing.mp4"), [tmp_path], field="video.uri")
