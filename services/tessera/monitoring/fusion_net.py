"""The av_fusion network: bidirectional cross-modal attention over visual and audio tokens (arXiv 2511.18698).

Visual tokens (one per frame, from detections and frame statistics) and audio tokens (one per audio window, the
YAMNet embedding plus loudness and spectral centroid) are projected to ``d``. Each layer is pre-norm: visual queries
attend to audio keys/values and audio queries to visual keys/values, each followed by a feed-forward block. Both
streams are mean-pooled over their present tokens and a head gives one anomaly logit. A learned "null" token leads
each stream, so a window with no audio (or no frames) still has something to attend to.

The paper's network is 4 layers, 8 heads, d = 256, FFN 1024 over 768-d ensembles; this one is sized for CPU
inference at 20 evaluations per second (defaults below) and is trained by ``tessera.monitoring.training``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from tessera.monitoring.evidence import AUDIO_DIM, AUDIO_TOKENS, VISUAL_DIM, VISUAL_TOKENS


@dataclass(frozen=True)
class FusionConfig:
    visual_dim: int = VISUAL_DIM
    audio_dim: int = AUDIO_DIM
    visual_tokens: int = VISUAL_TOKENS
    audio_tokens: int = AUDIO_TOKENS
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    ffn: int = 128
    dropout: float = 0.2

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class _FeedForward(nn.Module):
    def __init__(self, d: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d)
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x)
        return out


class CrossModalLayer(nn.Module):
    """Pre-norm bidirectional cross-attention: V <- attend(V, A), A <- attend(A, V), then FFNs."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.norm_vq, self.norm_akv = nn.LayerNorm(d), nn.LayerNorm(d)
        self.norm_aq, self.norm_vkv = nn.LayerNorm(d), nn.LayerNorm(d)
        self.v_from_a = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.a_from_v = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ffn_v = _FeedForward(d, ffn, dropout)
        self.ffn_a = _FeedForward(d, ffn, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, v: Tensor, a: Tensor, v_pad: Tensor, a_pad: Tensor) -> tuple[Tensor, Tensor]:
        akv = self.norm_akv(a)
        vkv = self.norm_vkv(v)
        v_att, _ = self.v_from_a(self.norm_vq(v), akv, akv, key_padding_mask=a_pad, need_weights=False)
        a_att, _ = self.a_from_v(self.norm_aq(a), vkv, vkv, key_padding_mask=v_pad, need_weights=False)
        v = v + self.drop(v_att)
        a = a + self.drop(a_att)
        return v + self.ffn_v(v), a + self.ffn_a(a)


class FusionNet(nn.Module):
    """visual [N, Tv, Dv], audio [N, Ta, Da] -> anomaly logit [N]. Feature 0 of a token is its presence flag."""

    def __init__(self, config: FusionConfig | None = None) -> None:
        super().__init__()
        c = config or FusionConfig()
        self.config = c
        self.visual_in = nn.Sequential(nn.LayerNorm(c.visual_dim), nn.Linear(c.visual_dim, c.d_model))
        self.audio_in = nn.Sequential(nn.LayerNorm(c.audio_dim), nn.Linear(c.audio_dim, c.d_model))
        self.visual_pos = nn.Parameter(torch.zeros(1, c.visual_tokens + 1, c.d_model))
        self.audio_pos = nn.Parameter(torch.zeros(1, c.audio_tokens + 1, c.d_model))
        self.visual_null = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.audio_null = nn.Parameter(torch.zeros(1, 1, c.d_model))
        nn.init.normal_(self.visual_pos, std=0.02)
        nn.init.normal_(self.audio_pos, std=0.02)
        nn.init.normal_(self.visual_null, std=0.02)
        nn.init.normal_(self.audio_null, std=0.02)
        self.layers = nn.ModuleList(CrossModalLayer(c.d_model, c.heads, c.ffn, c.dropout) for _ in range(c.layers))
        self.norm_v, self.norm_a = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.head = nn.Sequential(nn.Linear(2 * c.d_model, c.d_model), nn.GELU(), nn.Linear(c.d_model, 1))

    def forward(self, visual: Tensor, audio: Tensor) -> Tensor:
        n = visual.shape[0]
        v_present = visual[..., 0] > 0.5
        a_present = audio[..., 0] > 0.5
        ones = torch.ones(n, 1, dtype=torch.bool, device=visual.device)
        v_pad = ~torch.cat([ones, v_present], dim=1)
        a_pad = ~torch.cat([ones, a_present], dim=1)
        v = torch.cat([self.visual_null.expand(n, -1, -1), self.visual_in(visual)], dim=1) + self.visual_pos
        a = torch.cat([self.audio_null.expand(n, -1, -1), self.audio_in(audio)], dim=1) + self.audio_pos
        for layer in self.layers:
            v, a = layer(v, a, v_pad, a_pad)
        v_keep = (~v_pad).unsqueeze(-1).to(v.dtype)
        a_keep = (~a_pad).unsqueeze(-1).to(a.dtype)
        v_pooled = (self.norm_v(v) * v_keep).sum(1) / v_keep.sum(1)
        a_pooled = (self.norm_a(a) * a_keep).sum(1) / a_keep.sum(1)
        logit: Tensor = self.head(torch.cat([v_pooled, a_pooled], dim=-1)).squeeze(-1)
        return logit


def load(weights: str, config: dict[str, float | int] | None = None) -> FusionNet:
    """A trained network from a state_dict file (``torch.load(weights_only=True)``: no pickle), in eval mode."""
    fields = FusionConfig.__dataclass_fields__
    kwargs = {k: v for k, v in (config or {}).items() if k in fields}
    net = FusionNet(FusionConfig(**kwargs))  # type: ignore[arg-type]
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net.eval()
    return net
