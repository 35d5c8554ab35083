"""An input's per-channel scaling folded into the convolution that reads it: the same function,
one pass over the image less, and never folded where anything else could see the difference."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from modelbuild.torch_side.input_scale import fold_input_scale  # noqa: E402
from modelbuild.torch_side.wrapper import Prepared  # noqa: E402

FACTORS = [1 / 0.229, 1 / 0.224, 1 / 0.225]  # ImageNet's 1/std, as the wrapper gets it from normalize


class TwoReaders(nn.Module):
    """The scaled image read by a convolution and by something else."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(image) + image.mean()


class SharedWeight(nn.Module):
    """Two convolutions with one weight: scaling it for one would change the other."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.relu(self.conv(image)))


def _program(model: nn.Module, decomposed: bool = False) -> torch.export.ExportedProgram:
    torch.manual_seed(0)
    wrapped = Prepared(model.eval(), [FACTORS], None)
    program = torch.export.export(wrapped, (torch.rand(1, 3, 16, 16),), strict=False)
    return program.run_decompositions() if decomposed else program


def _muls(program: torch.export.ExportedProgram) -> int:
    return sum(1 for node in program.graph.nodes if node.target == torch.ops.aten.mul.Tensor)


@pytest.mark.parametrize("decomposed", [False, True], ids=["conv2d", "convolution"])
def test_the_scaling_moves_into_the_weights_and_the_function_stays(decomposed: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    program = _program(model, decomposed)
    x = torch.rand(1, 3, 16, 16)
    before = program.module()(x)
    assert _muls(program) == 1
    assert fold_input_scale(program) == ["0"]  # the model's first module, by its own name
    assert _muls(program) == 0
    assert not any("channel_factors" in name for name in (*program.state_dict, *program.constants))  # read by nothing now
    torch.testing.assert_close(program.module()(x), before, rtol=1e-5, atol=1e-6)  # rounding only; zero padding stays zero


def test_the_folded_program_lowers_to_xnnpack_and_computes_the_same() -> None:
    pytest.importorskip("executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()).eval()
    program = _program(model)
    x = torch.rand(1, 3, 16, 16)
    expected = program.module()(x)
    assert fold_input_scale(program) == ["0"]
    buffer = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
    out = Runtime.get().load_program(buffer).load_method("forward").execute([x])[0]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "model",
    [
        TwoReaders(),
        SharedWeight(),
        nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 3)),  # something between the scaling and the convolution
        nn.Conv2d(3, 3, 3, groups=3),  # a grouped (depthwise) convolution: not folded
        nn.ConvTranspose2d(3, 4, 2, stride=2),  # transposed: the weight's channels are its first axis
    ],
    ids=["image-read-twice", "shared-weight", "relu-first", "grouped", "transposed"],
)
def test_nothing_is_folded_where_the_difference_could_show(model: nn.Module) -> None:
    program = _program(model, decomposed=True)
    x = torch.rand(1, 3, 16, 16)
    before = program.module()(x)
    assert fold_input_scale(program) == []
    assert _muls(program) >= 1
    assert torch.equal(program.module()(x), before)


def test_a_model_parameter_named_like_the_folded_weight_is_not_read_in_its_place() -> None:
    """ExecuTorch's helper returns an existing placeholder of the name asked for: a parameter
    the model happens to call ``weight_input_scaled`` must not become the convolution's weight."""

    class Decoy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.conv.register_parameter("weight_input_scaled", nn.Parameter(torch.zeros(4, 3, 3, 3)))

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.conv(image) + self.conv.weight_input_scaled.sum()

    program = _program(Decoy(), decomposed=True)
    assert any(node.name.endswith("weight_input_scaled") for node in program.graph.nodes if node.op == "placeholder")
    x = torch.rand(1, 3, 16, 16)
    before = program.module()(x)
    assert fold_input_scale(program) == ["conv"]
    torch.testing.assert_close(program.module()(x), before, rtol=1e-5, atol=1e-6)


def test_a_parameter_whose_state_dict_key_is_the_folded_weights_name_keeps_its_value() -> None:
    """The new weight is stored under its placeholder's name: a tensor already stored under that
    key (a top-level parameter, whose placeholder fx names ``p_<key>``) must not be overwritten."""

    class Direct(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.register_buffer("factors", torch.tensor(FACTORS).reshape(1, 3, 1, 1))
            self.p_conv_weight_input_scaled = nn.Parameter(torch.ones(4, 3, 3, 3))

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.conv(image * self.factors) + self.p_conv_weight_input_scaled.sum()

    torch.manual_seed(0)
    program = torch.export.export(Direct().eval(), (torch.rand(1, 3, 16, 16),), strict=False)
    assert "p_conv_weight_input_scaled" in program.state_dict
    x = torch.rand(1, 3, 16, 16)
    before = program.module()(x)
    assert len(fold_input_scale(program)) == 1
    assert torch.equal(program.state_dict["p_conv_weight_input_scaled"], torch.ones(4, 3, 3, 3))
    torch.testing.assert_close(program.module()(x), before, rtol=1e-5, atol=1e-6)


def test_new_weights_patch_the_folded_program_to_the_bytes_a_full_conversion_writes(tmp_path: Path) -> None:
    """A weights-only rebuild patches the previous program's constants: the folded weight must
    follow the new weights exactly as a full conversion folds them."""
    pytest.importorskip("executorch")
    from modelbuild.torch_side import pte_constants as constants
    from tests.torch_side.test_pte_constants import SETTINGS, lower

    def folded(seed: int) -> torch.export.ExportedProgram:
        torch.manual_seed(seed)
        program = _program(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1)))
        assert fold_input_scale(program) == ["0"]
        return program

    data, record = lower(folded(0))
    constants.write_record(tmp_path, record)
    (tmp_path / "m.pte").write_bytes(data)
    patched, _ = constants.patch(tmp_path, "m.pte", folded(1), SETTINGS)
    full, _ = lower(folded(1))
    assert patched == full and patched != data


def _conv_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))


def test_the_folded_program_exports_to_onnx_without_the_multiplication_and_computes_the_same() -> None:
    """The ONNX target folds on torch alone (no ExecuTorch import): the file's first node is
    the convolution, and ONNX Runtime computes what the unfolded program computes."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    program = _program(_conv_net(0))
    x = torch.rand(1, 3, 16, 16)
    expected = program.module()(x)
    assert fold_input_scale(program) == ["0"]
    proto = torch.onnx.export(program, (x,), dynamo=True, verbose=False, report=False, opset_version=18).model_proto
    assert [node.op_type for node in proto.graph.node][0] == "Conv" and "Mul" not in {node.op_type for node in proto.graph.node}
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString())
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), expected, rtol=1e-5, atol=1e-5)


def test_new_weights_patch_the_folded_onnx_graph_to_the_bytes_a_full_export_writes(tmp_path: Path) -> None:
    """The ONNX stage fills its previous graph with the program's tensors by name: the folded
    weight, a tensor of the folded program, must come out as a full export folds it."""
    pytest.importorskip("onnxscript")
    from modelbuild.torch_side import onnx_constants as constants
    from tests.torch_side.test_onnx_constants import full_export, patched

    x = (torch.rand(1, 3, 16, 16),)

    def folded(seed: int) -> torch.export.ExportedProgram:
        program = _program(_conv_net(seed))
        assert fold_input_scale(program) == ["0"]
        return program

    first, structure, record = full_export(folded(0), x)
    assert structure is not None and any(name.endswith("_input_scaled") for name in record["weights"])
    constants.write(tmp_path, structure, record)
    new = folded(1)
    full, _, _ = full_export(new, x)
    assert patched(tmp_path, new) == full and full != first


class OwnScale(nn.Module):
    """A model that multiplies its input by a (1, 3, 1, 1) parameter before its convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(FACTORS).reshape(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(image * self.scale)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((1, 1, 16, 16), torch.float32), ((1, 3, 16, 16), torch.float16)],
    ids=["one-channel-broadcast-to-three", "float16-promoted-to-float32"],
)
def test_a_scaling_that_broadcasts_or_promotes_the_input_is_not_folded(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """Found by an adversarial run: folded, the convolution met the one-channel or float16
    image itself, and the build failed with an error about channels or dtypes."""
    torch.manual_seed(0)
    x = torch.rand(shape).to(dtype)
    program = torch.export.export(OwnScale().eval(), (x,), strict=False)
    before = program.module()(x)
    assert fold_input_scale(program) == []
    assert torch.equal(program.module()(x), before)


def test_the_models_own_scaling_of_a_matching_input_is_folded() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 16)
    program = torch.export.export(OwnScale().eval(), (x,), strict=False)
    before = program.module()(x)
    assert fold_input_scale(program) == ["conv.weight"]  # unwrapped: named by its parameter
    assert _muls(program) == 0
    torch.testing.assert_close(program.module()(x), before, rtol=1e-5, atol=1e-6)
