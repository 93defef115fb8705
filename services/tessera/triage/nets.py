"""The triage networks (torch): the captioner, the text reasoner, and the vision-direct ablation.

``Captioner`` is a small fully-convolutional lesion detector: one heatmap per lesion kind at 1/4 resolution
(peaks are lesions; counting and quadrants are done on the peaks by ``tessera.triage.findings``), plus a gate that
says whether the image is a fundus photograph at all. ``VisionDirect`` has the same lesion trunk with a
per-quadrant pooled classifier instead of the heatmaps: the same size where it matters, so the benchmark compares
what the two pathways learn from, not how big they are. ``Reasoner`` reads only the
features of the findings text.
"""

from __future__ import annotations

import torch
from torch import nn

from tessera.triage.findings import FEATURES
from tessera.triage.fundus import KINDS
from tessera.triage.grading import CLASSES

WIDTH = (16, 24, 32)


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Trunk(nn.Module):
    """RGB [N, 3, H, W] in [0, 1] -> local features [N, C, H/4, W/4] (fully convolutional: trains on crops)."""

    def __init__(self) -> None:
        super().__init__()
        a, b, c = WIDTH
        self.local = nn.Sequential(_block(3, a, 2), _block(a, b, 2), _block(b, c), _block(c, c, dilation=2))
        self.channels = c

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.local(rgb)
        return features


class FundusGate(nn.Module):
    """Is this a fundus photograph at all? A small net on the whole image at 64 pixels -> logit [N]."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(_block(3, 16, 2), _block(16, 32, 2), _block(32, 48, 2), _block(48, 64, 2))
        self.out = nn.Linear(64 * 2, 1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        small = nn.functional.interpolate(rgb, size=(64, 64), mode="area")
        features = self.net(small)
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        logit: torch.Tensor = self.out(pooled).squeeze(1)
        return logit


class Captioner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = Trunk()
        self.heatmaps = nn.Conv2d(self.trunk.channels, len(KINDS), 1)
        self.gate = FundusGate()
        assert self.heatmaps.bias is not None
        nn.init.constant_(self.heatmaps.bias, -4.0)  # lesions are rare: start from "none here" (focal-loss prior)

    def lesion_logits(self, rgb: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.heatmaps(self.trunk(rgb))
        return logits

    def forward(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> heatmap logits [N, kinds, H/4, W/4], in-distribution logit [N]."""
        return self.lesion_logits(rgb), self.gate(rgb)


class VisionDirect(nn.Module):
    """Image -> class logits, for the ablation only: the captioner's lesion trunk, and a classifier over its
    features pooled per quadrant (so it can learn where lesions are, as the rules need) instead of the heatmaps."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = Trunk()
        pooled = self.trunk.channels * 4 * 2  # avg and max over each quadrant
        self.classify = nn.Linear(pooled, len(CLASSES))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        features = self.trunk(rgb)
        avg = nn.functional.adaptive_avg_pool2d(features, 2).flatten(1)
        top = nn.functional.adaptive_max_pool2d(features, 2).flatten(1)
        logits: torch.Tensor = self.classify(torch.cat([avg, top], dim=1))
        return logits


class Reasoner(nn.Module):
    """Findings features -> class logits."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, len(CLASSES))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.out(self.net(features))
        return logits


def to_tensor(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] in [0, 1]."""
    return images.permute(0, 3, 1, 2).float().div(255.0)


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
