"""prepare: folding and fusion are exact in eval mode; dtype keeps a float32 interface."""

from __future__ import annotations

import torch
from torch import nn

from modelbuild.torch_side import prepare


def model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 16, 4),
        nn.ReLU(),
    )
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return net.eval()


def test_fold_batchnorm_is_exact_and_removes_every_batch_norm() -> None:
    net, x = model(), torch.randn(2, 3, 4, 4)
    expected = net(x)
    notes = prepare.apply(net, {"fold_batchnorm": True})
    assert notes == ["prepare: folded 2 batch norm(s) into the layer before them"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert torch.allclose(net(x), expected, atol=1e-5)
    assert not any(m.training for m in net.modules())  # the Identity left behind too: a trace records the flag


def test_fuse_makes_intrinsic_modules_with_the_same_outputs() -> None:
    import torch.ao.nn.intrinsic as nni

    net, x = model(), torch.randn(2, 3, 4, 4)
    expected = net(x)
    notes = prepare.apply(net, {"fuse": True})
    assert notes[1] == "prepare: fused 3 conv/linear + ReLU pair(s)"
    assert sum(isinstance(m, (nni.ConvReLU2d, nni.LinearReLU)) for m in net.modules()) == 3
    assert torch.allclose(net(x), expected, atol=1e-5)


def test_channels_last_changes_layout_not_values() -> None:
    net, x = model(), torch.randn(2, 3, 4, 4)
    expected = net(x)
    prepare.apply(net, {"channels_last": True})
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(net(x), expected, atol=1e-6)


def test_dtype_casts_weights_but_keeps_a_float32_interface() -> None:
    net, x = model(), torch.randn(2, 3, 4, 4)
    expected = net(x)
    half = prepare.cast_module(model(), "bfloat16")
    out = half(x)
    assert out.dtype == torch.float32 and half.inner[0].weight.dtype == torch.bfloat16
    assert 0 < (out - expected).abs().max().item() < 0.1  # bfloat16 arithmetic: close, not equal


class Branchy(nn.Module):
    """Named modules outside an nn.Sequential, one ReLU applied to the head, not the convolution."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 2)
        self.act = nn.ReLU()
        self.bn.running_mean.uniform_(-0.5, 0.5)
        self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(self.relu(self.bn(self.conv(x))).mean((2, 3))))


def _fuse(groups: list) -> tuple[nn.Module, list[str]]:
    net, x = Branchy().eval(), torch.randn(2, 3, 8, 8)
    return net, prepare.apply(net, {"fuse": groups}, probe=lambda: net(x))


def test_explicit_fuse_groups_follow_fuse_modules_and_keep_the_outputs() -> None:
    import torch.ao.nn.intrinsic as nni

    x = torch.randn(2, 3, 8, 8)
    expected = Branchy().eval()(x)
    net, notes = _fuse([["conv", "bn", "relu"], ["fc", "act"]])
    assert notes == ["prepare: fused 2 module group(s): conv+bn+relu; fc+act"]
    assert isinstance(net.conv, nni.ConvReLU2d) and isinstance(net.fc, nni.LinearReLU)
    assert isinstance(net.bn, nn.Identity) and isinstance(net.act, nn.Identity)
    assert torch.allclose(net(x), expected, atol=1e-5)


def test_a_group_whose_modules_do_not_feed_each_other_is_refused() -> None:
    import pytest

    from modelbuild.errors import UserError

    # fuse_modules alone would accept this (the types fit) and apply act's ReLU to the convolution.
    with pytest.raises(UserError, match=r"prepare.fuse\[0\]: expected 'act' to take 'conv''s output"):
        _fuse([["conv", "act"]])
    with pytest.raises(UserError, match=r"prepare.fuse\[1\]: expected module names of the model, got 'head'"):
        _fuse([["conv", "bn"], ["head", "act"]])
    with pytest.raises(UserError, match=r"cannot fuse \(<class 'torch.nn.modules.linear.Linear'>, <class 'torch.nn.modules.conv.Conv2d'>\)"):
        prepare.apply(Branchy().eval(), {"fuse": [["fc", "conv"]]})  # no probe: the types alone are refused
