"""The cry networks (torch): a denoising autoencoder on log-mel, a convolutional tokenizer, a small Transformer
encoder whose attention and feed-forward projections carry LoRA adapters, and two heads (cry / reason).

Only the adapters and the heads are trained on families' data (``adapter_parameters``); the tokenizer, the frozen
base projections and the denoiser come from central pre-training. This is what the federation exchanges.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

N_MELS = 64


@dataclass(frozen=True)
class Architecture:
    width: int = 64
    layers: int = 2
    heads: int = 4
    ffn: int = 128
    lora_rank: int = 4
    lora_alpha: float = 8.0
    max_tokens: int = 160  # 16 frames a token (160 ms): 25.6 s
    reasons: int = 5
    denoiser_channels: int = 48

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class Denoiser(nn.Module):
    """Log-mel [B, T, 64] -> denoised log-mel of the same shape (residual 1-D conv autoencoder over time)."""

    def __init__(self, channels: int = 48) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            nn.Conv1d(N_MELS, channels, 5, padding=2), nn.GELU(), nn.Conv1d(channels, channels // 2, 5, padding=2)
        )
        self.decode = nn.Sequential(
            nn.GELU(),
            nn.Conv1d(channels // 2, channels, 5, padding=2),
            nn.GELU(),
            nn.Conv1d(channels, N_MELS, 5, padding=2),
        )

    def forward(self, mel: Tensor) -> Tensor:
        residual: Tensor = self.decode(self.encode(mel.transpose(1, 2)))
        return mel + residual.transpose(1, 2)


class LoRALinear(nn.Module):
    """y = W x + b + (alpha / r) B A x, with W, b frozen after pre-training and B initialised to zero."""

    def __init__(self, features_in: int, features_out: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = nn.Linear(features_in, features_out)
        self.lora_a = nn.Parameter(torch.randn(rank, features_in) / math.sqrt(features_in))
        self.lora_b = nn.Parameter(torch.zeros(features_out, rank))
        self.scale = alpha / rank

    def forward(self, x: Tensor) -> Tensor:
        base: Tensor = self.base(x)
        return base + self.scale * F.linear(F.linear(x, self.lora_a), self.lora_b)


class Block(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        d, r, a = arch.width, arch.lora_rank, arch.lora_alpha
        self.heads = arch.heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = LoRALinear(d, 3 * d, r, a)
        self.out = LoRALinear(d, d, r, a)
        self.norm2 = nn.LayerNorm(d)
        self.up = LoRALinear(d, arch.ffn, r, a)
        self.down = LoRALinear(arch.ffn, d, r, a)

    def forward(self, x: Tensor, padding: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        mask = ~padding[:, None, None, :]  # True where attention is allowed
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.out(attended.transpose(1, 2).reshape(b, t, d))
        feed: Tensor = self.down(F.gelu(self.up(self.norm2(x))))
        return x + feed


class CryNet(nn.Module):
    """Log-mel [B, T, 64] and valid frame counts [B] -> (cry logit [B], reason logits [B, 5])."""

    FRAMES_PER_TOKEN = 16

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        d = arch.width
        self.denoiser = Denoiser(arch.denoiser_channels)
        self.tokenizer = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.GELU(),  # [16, T/2, 32]
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.GELU(),  # [32, T/4, 16]
            nn.Conv2d(32, 32, 3, padding=1), nn.GELU(), nn.MaxPool2d((4, 2)),  # [32, T/16, 8]
        )  # fmt: skip
        self.project = nn.Linear(32 * 8, d)
        self.position = nn.Parameter(torch.randn(arch.max_tokens, d) * 0.02)
        self.blocks = nn.ModuleList(Block(arch) for _ in range(arch.layers))
        self.norm = nn.LayerNorm(d)
        self.cry_head = nn.Linear(d, 1)
        self.reason_head = nn.Linear(d, arch.reasons)

    def embed(self, mel: Tensor, frames: Tensor, denoise: bool = True) -> Tensor:
        if denoise:
            mel = self.denoiser(mel)
        x = self.tokenizer(((mel + 6.0) / 4.0).unsqueeze(1))  # log-mel of speech-level audio is about -6 +- 4
        b, c, t, f = x.shape
        x = self.project(x.permute(0, 2, 1, 3).reshape(b, t, c * f))
        t = min(t, self.arch.max_tokens)
        x = x[:, :t] + self.position[:t]
        tokens = torch.clamp(frames // self.FRAMES_PER_TOKEN, min=1, max=t)
        padding = torch.arange(t, device=x.device)[None, :] >= tokens[:, None]
        for block in self.blocks:
            x = block(x, padding)
        x = self.norm(x)
        keep = (~padding).unsqueeze(-1).float()
        pooled: Tensor = (x * keep).sum(1) / keep.sum(1)
        return pooled

    def forward(self, mel: Tensor, frames: Tensor, denoise: bool = True) -> tuple[Tensor, Tensor]:
        pooled = self.embed(mel, frames, denoise)
        return self.cry_head(pooled).squeeze(-1), self.reason_head(pooled)


def adapter_names(net: CryNet) -> list[str]:
    """The parameters families train and the federation exchanges: LoRA factors and the two heads."""
    return [n for n, _ in net.named_parameters() if ".lora_" in n or n.startswith(("cry_head.", "reason_head."))]


def adapter_parameters(net: CryNet) -> Iterator[nn.Parameter]:
    names = set(adapter_names(net))
    return (p for n, p in net.named_parameters() if n in names)


def freeze_backbone(net: CryNet) -> None:
    """Only the adapters stay trainable."""
    names = set(adapter_names(net))
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(name in names)


def reset_adapters(net: CryNet, seed: int) -> None:
    """Adapters back to their initial state (LoRA A random, B zero, fresh heads) over the pre-trained backbone."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, LoRALinear):
                fan_in = module.lora_a.shape[1]
                module.lora_a.copy_(torch.randn(module.lora_a.shape, generator=generator) / math.sqrt(fan_in))
                module.lora_b.zero_()
        for head in (net.cry_head, net.reason_head):
            bound = 1.0 / math.sqrt(head.in_features)
            head.weight.copy_((torch.rand(head.weight.shape, generator=generator) * 2 - 1) * bound)
            head.bias.copy_((torch.rand(head.bias.shape, generator=generator) * 2 - 1) * bound)
