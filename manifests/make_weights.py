"""Write the example models' weights and validation samples (seeded, so the shipped files
can be re-made exactly).

    python manifests/make_weights.py [NAME ...]   (all models when no name is given)

Random initialisation is not the same on every CPU (torch's vectorised uniform_ rounds the
last bit differently under AVX2 and without it), which is why the examples ship these files
instead of initialising in their factories: a factory's random weights would make another
machine's build differ, and `modelbuild build --locked` would say so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from models import classifier, generate, generator, gpt, imageclassifier, lstm, mobilenet, rmsnorm, segmenter, textclassifier  # noqa: E402

MODELS = {
    "classifier": lambda: classifier.build(num_classes=10, width=16),
    "segmenter": lambda: segmenter.build(num_classes=4),
    "generator": lambda: generator.build(width=16, blocks=2),
    "gpt": lambda: gpt.build(vocab_size=512, dim=64, heads=4, layers=2, max_len=128),
    "lstm": lambda: lstm.build(features=8, hidden=32, num_classes=3),
    "mobilenet": lambda: mobilenet.build(num_classes=1000),
    "rmsnorm": lambda: rmsnorm.LoudBlock(),
    "generate": lambda: generate.build(max_new=12),
    "textclassifier": lambda: textclassifier.build(vocab_size=1024, dim=64, layers=2, heads=4, max_len=128, num_labels=3),
    "imageclassifier": lambda: imageclassifier.build(num_labels=5, width=16, depths=(1, 1, 1)),
}
SEEDS = {
    "classifier": 1000,
    "generator": 1001,
    "gpt": 1002,
    "lstm": 1003,
    "segmenter": 1004,
    "mobilenet": 1005,
    "rmsnorm": 1006,
    "generate": 1007,
    "textclassifier": 1008,
    "imageclassifier": 1009,
}


def main(only: list[str]) -> None:
    out = HERE / "weights"
    out.mkdir(exist_ok=True)
    for name, make in sorted(MODELS.items()):
        if only and name not in only:
            continue
        torch.manual_seed(SEEDS[name])
        model = make()
        # Non-trivial batch-norm statistics, so folding and conversion are really exercised.
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(out / f"{name}.safetensors"))
        print(f"{name}: {sum(v.numel() for v in state.values())} values")
    if not only:
        make_samples()
    if not only or "onnxsegmenter" in only:
        make_onnx()


def make_samples() -> None:
    """A "photo" for the segmenter's validate.data: smooth shapes at a size that is none of the
    generated ones (200x296), so verification also covers a real-looking, non-square input."""
    import numpy as np

    out = HERE / "samples"
    out.mkdir(exist_ok=True)
    y, x = np.mgrid[0:200, 0:296].astype(np.float32)
    red = 255 * (x / 295)
    green = 255 * (((x - 150) ** 2 + (y - 90) ** 2) < 60**2)
    blue = 128 + 127 * np.sin(y / 15.0)
    image = np.stack([red, green, blue], axis=-1).round().clip(0, 255).astype(np.uint8)
    np.savez(out / "segmenter.npz", image=image)
    print(f"samples/segmenter.npz: image {list(image.shape)} uint8")


def make_onnx() -> None:
    """models/segmenter.onnx: the segmenter with its weights, as a user who only has an ONNX
    file would have it (the TorchScript-based exporter, opset 17, 256x256), for onnxsegmenter.yaml."""
    import io
    import warnings

    from safetensors.torch import load_file

    model = segmenter.build(num_classes=4)
    model.load_state_dict(load_file(str(HERE / "weights" / "segmenter.safetensors")))
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(1, 3, 256, 256),), buffer, dynamo=False, opset_version=17, input_names=["image"], output_names=["out", "aux"])
    (HERE / "models" / "segmenter.onnx").write_bytes(buffer.getvalue())
    print(f"models/segmenter.onnx: {len(buffer.getvalue())} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
