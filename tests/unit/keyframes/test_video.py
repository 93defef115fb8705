"""PyAV decoding on a real generated video: seeks, forward decoding, counts, corrupt input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tessera.keyframes.video import TruncatedVideo, VideoError, decode_at, probe, thumbnail_size


def test_probe_reads_duration_rate_and_gop(short_video: Path) -> None:
    info = probe(short_video)
    assert info.duration_s == pytest.approx(240, abs=1)
    assert info.fps == pytest.approx(12)
    assert (info.width, info.height) == (320, 240)
    assert info.keyframe_interval_s == pytest.approx(4.0, abs=0.5)


def test_few_frames_never_decode_the_whole_video(short_video: Path) -> None:
    info = probe(short_video)
    total_frames = info.duration_s * info.fps
    result = decode_at(short_video, [200.0, 10.0, 120.0])
    assert set(result.frames) == {0, 1, 2}  # results keyed by request position, whatever the decode order
    gop_frames = info.fps * (info.keyframe_interval_s or 4.0)
    assert result.decoded <= 3 * (gop_frames + 1)
    assert result.decoded < total_frames / 20


def test_dense_targets_decode_forward_once(short_video: Path) -> None:
    times = [float(t) for t in range(30, 60)]
    result = decode_at(short_video, times)
    # One seek, then forward: about 30 s of frames plus at most one GOP of lead-in.
    assert result.decoded <= (30 + 5) * 12


def test_frames_match_their_timestamps(short_video: Path) -> None:
    one = decode_at(short_video, [100.0]).frames[0]
    again = decode_at(short_video, [5.0, 100.0]).frames[1]
    other = decode_at(short_video, [170.0]).frames[0]
    assert one.shape == (240, 320, 3) and one.dtype == np.uint8
    assert np.array_equal(one, again)  # the same frame whether reached by seek or by decoding on
    assert not np.array_equal(one, other)


def test_thumbnail_size_keeps_aspect() -> None:
    assert thumbnail_size(1920, 1080, 320) == (320, 180)
    assert thumbnail_size(200, 100, 320) == (200, 100)


def test_corrupt_and_empty_inputs(tmp_path: Path, short_video: Path) -> None:
    with pytest.raises(VideoError):
        probe(b"")
    with pytest.raises(VideoError):
        probe(b"\x00" * 1000)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(VideoError):
        probe(text)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(short_video.read_bytes()[:2000])
    with pytest.raises(VideoError):
        decode_at(truncated, [1.0])


@pytest.mark.parametrize(
    ("container", "codec", "pix_fmt"),
    [("mpegts", "libx264", "yuv420p"), ("webm", "libvpx-vp9", "yuv420p"), ("matroska", "mpeg4", "yuv420p"),
     ("avi", "mjpeg", "yuvj420p")],
)  # fmt: skip
def test_other_containers_and_timestamp_origins(tmp_path: Path, container: str, codec: str, pix_fmt: str) -> None:
    """Frame i of a 10 fps clip has brightness 5 i; whatever the container, t seconds finds frame 10 t."""
    import av

    path = tmp_path / f"clip.{container}"
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        for i in range(50):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 5, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    info = probe(path)
    assert info.duration_s == pytest.approx(5.0, abs=0.3)
    frames = decode_at(path, [0.0, 2.0, 4.0]).frames
    for position, expected in ((0, 0), (1, 100), (2, 200)):
        assert abs(float(frames[position].mean()) - expected) < 12, (container, position, frames[position].mean())


def _faststart(source: Path, dest: Path) -> Path:
    """The same packets with the MP4 index moved to the front, as streaming encoders write it."""
    import av

    with av.open(str(source)) as src, av.open(str(dest), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return dest


def test_a_truncated_file_is_named_not_padded_with_its_last_frame(tmp_path: Path, short_video: Path) -> None:
    data = _faststart(short_video, tmp_path / "whole.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])  # header intact (the index is at the front), data ends early
    assert probe(cut).duration_s == pytest.approx(240, abs=1)  # the header still promises four minutes
    assert set(decode_at(cut, [5.0, 30.0]).frames) == {0, 1}  # frames before the cut are fine
    with pytest.raises(TruncatedVideo, match=r"data ends at .* s but the header promises frames at 200\.0 s"):
        decode_at(cut, [5.0, 200.0])
    whole = decode_at(short_video, [5.0, 200.0, probe(short_video).duration_s - 1.0])
    assert len(whole.frames) == 3  # a complete file up to its last second is not truncated
