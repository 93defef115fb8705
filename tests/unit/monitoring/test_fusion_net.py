from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from tessera.monitoring import fusion_net
from tessera.monitoring.fusion_net import FusionConfig, FusionNet


def batch(n: int = 3, present_v: int = 5, present_a: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    config = FusionConfig()
    visual = torch.rand(n, config.visual_tokens, config.visual_dim)
    audio = torch.rand(n, config.audio_tokens, config.audio_dim)
    visual[..., 0] = 0.0
    audio[..., 0] = 0.0
    visual[:, config.visual_tokens - present_v :, 0] = 1.0
    audio[:, config.audio_tokens - present_a :, 0] = 1.0
    return visual, audio


def test_shapes_and_padding_is_ignored() -> None:
    torch.manual_seed(1)
    net = FusionNet().eval()
    visual, audio = batch(present_v=2, present_a=1)
    with torch.inference_mode():
        out = net(visual, audio)
        visual2, audio2 = visual.clone(), audio.clone()
        visual2[:, :3, 1:] = 123.0  # padded tokens' content must not matter
        audio2[:, :3, 1:] = -7.0
        assert out.shape == (3,)
        assert torch.allclose(out, net(visual2, audio2), atol=1e-5)


def test_both_directions_carry_information() -> None:
    torch.manual_seed(2)
    net = FusionNet().eval()
    visual, audio = batch()
    with torch.inference_mode():
        base = net(visual, audio)
        changed_audio = audio.clone()
        changed_audio[..., 1:] += 1.0
        changed_visual = visual.clone()
        changed_visual[..., 1:] += 1.0
        assert not torch.allclose(base, net(visual, changed_audio))
        assert not torch.allclose(base, net(changed_visual, audio))
        # With no audio at all (every token padding) the null token still gives a finite answer.
        silent = audio.clone()
        silent[..., 0] = 0.0
        assert torch.isfinite(net(visual, silent)).all()


def test_round_trip_through_a_weights_only_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(3)
    config = FusionConfig(d_model=32, heads=2, layers=1, ffn=64)
    net = FusionNet(config).eval()
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    loaded = fusion_net.load(str(path), config.to_dict())
    visual, audio = batch()
    with torch.inference_mode():
        assert torch.allclose(net(visual, audio), loaded(visual, audio))
    buffer = io.BytesIO()
    torch.save({"not": object()}, buffer)  # a pickled object: weights_only refuses it
    (tmp_path / "bad.pt").write_bytes(buffer.getvalue())
    with pytest.raises(Exception, match=r"[Ww]eights"):
        fusion_net.load(str(tmp_path / "bad.pt"), config.to_dict())
