"""The network's invariants: adapters start as a no-op, only adapters train after freezing, batching is neutral."""

from __future__ import annotations

import torch

from tessera.cry import nets


def test_lora_starts_as_the_base_layer_and_gradients_reach_both_factors() -> None:
    layer = nets.LoRALinear(8, 4, rank=2, alpha=4.0)
    x = torch.randn(3, 8)
    assert torch.allclose(layer(x), layer.base(x))
    layer(x).sum().backward()
    assert layer.lora_b.grad is not None and float(layer.lora_b.grad.abs().sum()) > 0


def test_only_adapters_and_heads_stay_trainable_and_they_are_a_small_share() -> None:
    net = nets.CryNet(nets.Architecture())
    nets.freeze_backbone(net)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == set(nets.adapter_names(net))
    assert all(".lora_" in n or n.startswith(("cry_head", "reason_head")) for n in trainable)
    adapters = sum(p.numel() for p in nets.adapter_parameters(net))
    assert adapters * 10 < sum(p.numel() for p in net.parameters())


def test_a_clip_gets_the_same_answer_alone_or_batched_with_another_of_its_length() -> None:
    torch.manual_seed(0)
    net = nets.CryNet(nets.Architecture()).eval()
    a, b = torch.randn(1, 160, 64) - 6, torch.randn(1, 160, 64) - 6
    with torch.no_grad():
        cry_a, reasons_a = net(a, torch.tensor([160]))
        cry_ab, reasons_ab = net(torch.cat([a, b]), torch.tensor([160, 160]))
        short_cry, _ = net(a[:, :20], torch.tensor([20]))  # shorter than a token's 16 frames x 2: still answers
    assert torch.allclose(cry_a, cry_ab[:1], atol=1e-5) and torch.allclose(reasons_a, reasons_ab[:1], atol=1e-5)
    assert torch.isfinite(short_cry).all()
