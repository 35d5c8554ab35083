"""The Linux executor against PyTorch, one op family at a time, in float32 and float16.

Each case converts a tiny torch module with coremltools, saves the package, runs the saved
bytes in ``modelbuild.mil`` and compares with the module itself. Each case also asserts the
MIL ops it is meant to exercise are really in the program.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from modelbuild.mil.program import ProgramRunner, program_ops, quiet_descriptors


def convert(module: nn.Module, shapes: dict[str, tuple[int, ...]], precision: str, folder: Path, dtypes: dict | None = None) -> Path:
    with quiet_descriptors():
        import coremltools as ct

        examples = tuple(_example(shape, (dtypes or {}).get(name)) for name, shape in shapes.items())
        traced = torch.jit.trace(module.eval(), examples)
        inputs = [
            ct.TensorType(name=name, shape=shape, dtype=np.int32 if (dtypes or {}).get(name) == "int32" else np.float32) for name, shape in shapes.items()
        ]
        model = ct.convert(
            traced,
            inputs=inputs,
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS17,
            compute_precision=ct.precision.FLOAT16 if precision == "float16" else ct.precision.FLOAT32,
        )
    path = folder / f"{precision}.mlpackage"
    model.save(str(path))
    return path


def _example(shape: tuple[int, ...], dtype: str | None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    if dtype == "int32":
        return torch.randint(0, 10, shape, generator=generator, dtype=torch.int32)
    return torch.rand(shape, generator=generator) * 2 - 1


class Lambda(nn.Module):
    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


def _conv_block() -> nn.Module:
    torch.manual_seed(0)
    block = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU6(),
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4, bias=False),
        nn.Hardsigmoid(),
        nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1),
        nn.LeakyReLU(0.1),
        nn.InstanceNorm2d(4, affine=True),
    )
    block[2].running_mean.uniform_(-0.2, 0.2)
    block[2].running_var.uniform_(0.5, 1.5)
    return block


def _transformer_block() -> nn.Module:
    torch.manual_seed(1)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(16)
            self.qkv = nn.Linear(16, 48)
            self.out = nn.Linear(16, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
            scores = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1)
            return nn.functional.gelu(self.out(scores @ v)) + nn.functional.silu(x)

    return Block()


CASES: dict[str, tuple[Callable[[], nn.Module], dict, set[str], dict | None]] = {
    "conv": (_conv_block, {"x": (1, 3, 16, 16)}, {"conv", "conv_transpose", "clip", "batch_norm", "instance_norm", "leaky_relu", "sigmoid_hard"}, None),
    "transformer": (_transformer_block, {"x": (1, 6, 16)}, {"layer_norm", "linear", "matmul", "softmax", "gelu", "split"}, None),
    "pooling": (
        lambda: Lambda(
            lambda x: (
                nn.functional.max_pool2d(x, 3, 2, 1)
                + nn.functional.avg_pool2d(x, 2, 2)
                + nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
                + nn.functional.max_pool2d(x, 3, 2, ceil_mode=True)[..., :4, :4]
                + nn.functional.adaptive_avg_pool2d(x, 1)
            )
        ),
        {"x": (1, 2, 8, 8)},
        {"max_pool", "avg_pool"},
        None,
    ),
    "resize": (
        lambda: Lambda(
            lambda x: (
                nn.functional.interpolate(x, scale_factor=2, mode="nearest")[..., :6, :6]
                + nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)[..., :6, :6]
                + nn.functional.interpolate(x, size=(6, 6), mode="bilinear", align_corners=True)
            )
        ),
        {"x": (1, 2, 5, 5)},
        {"upsample_nearest_neighbor"},
        None,
    ),
    "pad": (
        lambda: Lambda(
            lambda x: (
                nn.functional.pad(x, (1, 2, 2, 1), mode="reflect")
                + nn.functional.pad(x, (1, 2, 2, 1), mode="replicate")
                + nn.functional.pad(x, (1, 2, 2, 1), value=0.5)
            )
        ),
        {"x": (1, 2, 6, 6)},
        {"pad"},
        None,
    ),
    "elementwise": (
        lambda: Lambda(
            lambda x: (
                torch.sigmoid(x)
                + torch.tanh(x)
                + nn.functional.elu(x)
                + torch.erf(x)
                + torch.exp(x)
                + torch.log(x.abs() + 1)
                + torch.sqrt(x.abs())
                + torch.rsqrt(x.abs() + 1)
                + torch.pow(x.abs(), 1.5)
                + torch.where(x > 0, x, -x)
                + torch.clamp(x, -0.5, 0.5)
                + torch.maximum(x, x * 0.5)
            )
        ),
        {"x": (2, 3, 4)},
        {"sigmoid", "tanh", "elu", "erf", "exp", "log", "sqrt", "rsqrt", "pow", "select", "clip"},
        None,
    ),
    "shapes": (
        lambda: Lambda(
            lambda x: (
                torch.cat([x.reshape(2, 12).t().reshape(4, 6), x.permute(2, 0, 1).reshape(4, 6)], 0)[::2, 1:5].flip(0).repeat(1, 2).unsqueeze(0).squeeze(0)
                + x.reshape(-1)[torch.tensor([0, 5, 7])].sum()
            )
        ),
        {"x": (2, 3, 4)},
        {"reshape", "transpose", "concat", "slice_by_index", "tile"},
        None,
    ),
    "reductions": (
        lambda: Lambda(
            lambda x: torch.stack(
                [
                    x.sum(-1),
                    x.mean(-1),
                    x.amax(-1),
                    x.amin(-1),
                    torch.topk(x, 2, dim=-1).values.sum(-1),
                    torch.cumsum(x, -1)[..., -1],
                    x.norm(dim=-1),
                    torch.argmax(x, -1).float(),
                ],
                -1,
            )
        ),
        {"x": (3, 5)},
        {"reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "topk", "cumsum"},
        None,
    ),
    "embedding": (
        lambda: Lambda(lambda ids: nn.functional.embedding(ids, torch.arange(40.0).reshape(10, 4) / 40) * torch.triu(torch.ones(ids.shape[1], 4)).sum(0)),
        {"ids": (1, 6)},
        {"gather"},
        {"ids": "int32"},
    ),
    # coremltools turns a traced GRU into a while_loop over the sequence: control flow, scatter.
    "recurrent": (lambda: (torch.manual_seed(2), nn.GRU(4, 6, batch_first=True))[1], {"x": (1, 7, 4)}, {"while_loop", "scatter"}, None),
    "batched_matmul": (lambda: Lambda(lambda x: torch.einsum("bij,bjk->bik", x, x.transpose(1, 2))), {"x": (2, 3, 4)}, {"matmul"}, None),
}


def _outputs(module: nn.Module, shapes: dict, dtypes: dict | None) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    feeds = {name: _example(shape, (dtypes or {}).get(name)).numpy() for name, shape in shapes.items()}
    with torch.no_grad():
        result = module(*[torch.from_numpy(f) for f in feeds.values()])
    result = result[0] if isinstance(result, tuple) else result
    return feeds, [result.numpy()]


@pytest.mark.parametrize("precision", ["float32", "float16"])
@pytest.mark.parametrize("family", sorted(CASES))
def test_executor_matches_pytorch(family: str, precision: str, tmp_path: Path) -> None:
    make, shapes, expected_ops, dtypes = CASES[family]
    module = make().eval()
    package = convert(module, shapes, precision, tmp_path, dtypes)
    runner = ProgramRunner(package)
    found = program_ops(runner.program)
    assert expected_ops <= found, f"the program has {sorted(found)}"
    feeds, want = _outputs(module, shapes, dtypes)
    got = [v.float().numpy() for v in runner.run(feeds).values()]
    scale = max(1.0, float(np.abs(want[0]).max()))
    tolerance = 1e-4 if precision == "float32" else 2e-2
    assert np.abs(got[0].reshape(want[0].shape) - want[0]).max() <= tolerance * scale


def test_enumerated_shapes_run_at_each_declared_shape(tmp_path: Path) -> None:
    module = _conv_block().eval()
    with quiet_descriptors():
        import coremltools as ct

        traced = torch.jit.trace(module, torch.zeros(1, 3, 16, 16))
        shapes = ct.EnumeratedShapes(shapes=[(1, 3, 16, 16), (1, 3, 24, 32)], default=(1, 3, 16, 16))
        model = ct.convert(
            traced,
            inputs=[ct.TensorType(name="x", shape=shapes)],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS17,
            compute_precision=ct.precision.FLOAT32,
        )
    model.save(str(tmp_path / "enum.mlpackage"))
    runner = ProgramRunner(tmp_path / "enum.mlpackage")
    for shape in ((1, 3, 16, 16), (1, 3, 24, 32)):
        x = torch.rand(shape) * 2 - 1
        with torch.no_grad():
            want = module(x).numpy()
        got = next(iter(runner.run({"x": x.numpy()}).values())).numpy()
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


def _compressed(tmp_path: Path, how: str) -> tuple[nn.Module, Path]:
    torch.manual_seed(4)
    module = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    with quiet_descriptors():
        import coremltools as ct
        import coremltools.optimize.coreml as cto

        traced = torch.jit.trace(module, torch.zeros(1, 32))
        model = ct.convert(
            traced,
            inputs=[ct.TensorType(name="x", shape=(1, 32))],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS18,
            compute_precision=ct.precision.FLOAT32,
        )
        if how == "quantize":
            config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", granularity="per_channel", weight_threshold=0)
            model = cto.linear_quantize_weights(model, cto.OptimizationConfig(global_config=config))
        else:
            config = cto.OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=0)
            model = cto.prune_weights(model, cto.OptimizationConfig(global_config=config))
    model.save(str(tmp_path / f"{how}.mlpackage"))
    return module, tmp_path / f"{how}.mlpackage"


@pytest.mark.parametrize("how,op", [("quantize", "constexpr_blockwise_shift_scale"), ("prune", "constexpr_sparse_to_dense")])
def test_compressed_weights_decompress_as_an_independent_computation_says(tmp_path: Path, how: str, op: str) -> None:
    module, package = _compressed(tmp_path, how)
    runner = ProgramRunner(package)
    assert op in program_ops(runner.program)
    expected = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    expected.load_state_dict(module.state_dict())
    with torch.no_grad():
        for layer in (expected[0], expected[2]):
            w = layer.weight
            if how == "quantize":  # int8 symmetric per output channel: q = round(w / s), s = max|w| / 127
                scale = w.abs().amax(dim=1, keepdim=True) / 127
                layer.weight.copy_(torch.clamp(torch.round(w / scale), -127, 127) * scale)
            else:  # magnitude pruning to 50%: the smaller half of |w| becomes zero
                cut = w.abs().flatten().kthvalue(w.numel() // 2).values
                layer.weight.copy_(torch.where(w.abs() <= cut, torch.zeros_like(w), w))
    x = torch.rand(1, 32) * 2 - 1
    with torch.no_grad():
        want, original = expected(x).numpy(), module(x).numpy()
    got = next(iter(runner.run({"x": x.numpy()}).values())).numpy()
    assert np.abs(got - want).max() < 1e-5
    assert np.abs(got - original).max() > 1e-5  # the compression really changed the weights
