"""Writes the corpus's weight files (run once; the outputs are committed)."""

import json
import pickle
import struct
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
weights = HERE / "weights"
torch.manual_seed(0)
state = {"linear.weight": torch.randn(2, 4), "linear.bias": torch.randn(2)}
save_file(state, str(weights / "tiny.safetensors"))
data = (weights / "tiny.safetensors").read_bytes()
(weights / "truncated.safetensors").write_bytes(data[: len(data) // 2])
(weights / "not_tensors.safetensors").write_text('{"this": "is json, not tensors"}')
save_file({"encoder.weight": torch.randn(2, 4), "encoder.bias": torch.randn(2)}, str(weights / "renamed.safetensors"))


class Payload:
    """Unpickling this would run a shell command; weights_only loading must refuse it."""

    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/modelbuild-corpus-pwned",))


(weights / "code.pt").write_bytes(pickle.dumps({"linear.weight": Payload()}))

# A header that lies: it claims a million rows where the file holds 32 bytes.
header = json.dumps(
    {"linear.weight": {"dtype": "F32", "shape": [1000000, 4], "data_offsets": [0, 32]}, "linear.bias": {"dtype": "F32", "shape": [2], "data_offsets": [32, 40]}}
).encode()
(weights / "lying_header.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 40)

# An ONNX graph with an operator of a custom domain, which no converter knows.
import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

nodes = [helper.make_node("Relu", ["x"], ["h"], name="act"), helper.make_node("Warp", ["h"], ["y"], name="warp/apply", domain="ai.example")]
graph = helper.make_graph(
    nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])]
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.example", 1)])
onnx.save(model, str(weights / "custom_op.onnx"))
