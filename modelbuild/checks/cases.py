"""Seeded sample cases at the shapes a manifest asks for, stored as plain ``.npy`` files.

Images are generated as uint8 pixels (N, H, W, C, in the input's channel order) and become
model tensors only through the scale and bias the artifact declares (:func:`model_feeds`),
so every runtime is checked against the same preprocessing contract Core ML applies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelbuild.manifest.preprocess import image_preprocessing
from modelbuild.manifest.shapes import shape_at

CASES_FILE = "cases.json"


@dataclass(frozen=True)
class ShapeChoice:
    """One concrete shape for every input, and the label a person reads in tables."""

    label: str
    shapes: dict[str, list[int]]


def shape_choices(inputs: list[dict[str, Any]], wanted: list[Any], enumerated: bool = False) -> list[ShapeChoice]:
    """Resolve ``default``/``min``/``max`` labels and explicit ``{input: shape}`` entries.

    Choices that give the same shapes are kept once (a fixed-shape model has one). With
    ``enumerated``, every declared enumerated shape is added, since each is a separate
    program path in a Core ML model.
    """
    choices: list[ShapeChoice] = []
    for entry in wanted:
        if isinstance(entry, dict):
            shapes = {i["name"]: list(entry.get(i["name"], shape_at(i, "default"))) for i in inputs}
            label = " ".join(f"{name}={'×'.join(map(str, s))}" for name, s in shapes.items() if name in entry)
        else:
            shapes = {i["name"]: shape_at(i, entry) for i in inputs}
            label = str(entry)
        choices.append(ShapeChoice(label, shapes))
    if enumerated:
        count = max((len(i["shapes"]) for i in inputs if "shapes" in i), default=0)
        for index in range(count):
            shapes = {i["name"]: list(i["shapes"][index]) if "shapes" in i and index < len(i["shapes"]) else shape_at(i, "default") for i in inputs}
            choices.append(ShapeChoice(f"shapes[{index}]", shapes))
    unique: list[ShapeChoice] = []
    for choice in choices:
        if all(choice.shapes != seen.shapes for seen in unique):
            unique.append(choice)
    return unique


def generate(inputs: list[dict[str, Any]], shapes: dict[str, list[int]], seed: int) -> dict[str, np.ndarray]:
    """Raw seeded inputs: uint8 NHWC pixels for images, typed arrays for tensors."""
    rng = np.random.default_rng(seed)
    raw: dict[str, np.ndarray] = {}
    for inp in inputs:
        shape = list(shapes[inp["name"]])
        if inp["kind"] == "image":
            n, c, h, w = shape
            raw[inp["name"]] = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
            continue
        dtype = np.dtype(inp["dtype"])
        if inp.get("values") == "padding_mask":
            # What a tokenizer's attention mask looks like: ones for a random length (at least
            # one token), then padding. A fully padded row is no real input, and runtimes
            # disagree on what it gives.
            lengths = rng.integers(1, shape[-1] + 1, size=shape[:-1])
            raw[inp["name"]] = (np.arange(shape[-1]) < lengths[..., None]).astype(dtype)
        elif dtype.kind == "f":
            low, high = inp.get("range", [-1.0, 1.0])
            raw[inp["name"]] = (rng.random(shape) * (high - low) + low).astype(dtype)
        elif dtype.kind == "b":
            raw[inp["name"]] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            low, high = inp.get("range", [0, 100])
            raw[inp["name"]] = rng.integers(int(low), int(high), size=shape).astype(dtype)
    return raw


def pixels_to_tensor(inp: dict[str, Any], pixels: np.ndarray) -> np.ndarray:
    """``pixel * scale + bias[c]`` in NCHW float32: what Core ML's ImageType computes."""
    pre = image_preprocessing(inp)
    nchw = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).astype(np.float32)
    bias = np.asarray(pre.bias, dtype=np.float32).reshape(1, -1, 1, 1)
    return (nchw * np.float32(pre.scale) + bias).astype(np.float32)


def model_feeds(inputs: list[dict[str, Any]], raw: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The tensors a tensor-input runtime (torch, ONNX, ExecuTorch) receives, in input order."""
    return [pixels_to_tensor(i, raw[i["name"]]) if i["kind"] == "image" else raw[i["name"]] for i in inputs]


@dataclass
class Case:
    id: str
    shape: str
    raw: dict[str, np.ndarray]
    expected: list[np.ndarray] = field(default_factory=list)


def write_cases(folder: Path, cases: list[Case], output_names: list[str]) -> None:
    """One ``.npy`` per array (``np.save`` is byte-reproducible, unlike a zip) plus an index."""
    index: dict[str, Any] = {"outputs": output_names, "cases": []}
    for case in cases:
        entry: dict[str, Any] = {"id": case.id, "shape": case.shape, "inputs": {}, "outputs": []}
        for name, array in case.raw.items():
            file = f"{case.id}.in.{name}.npy"
            np.save(folder / file, array, allow_pickle=False)
            entry["inputs"][name] = file
        for position, array in enumerate(case.expected):
            file = f"{case.id}.out.{position}.npy"
            np.save(folder / file, array, allow_pickle=False)
            entry["outputs"].append(file)
        index["cases"].append(entry)
    (folder / CASES_FILE).write_text(json.dumps(index, indent=1, sort_keys=True))


def read_cases(folder: Path) -> tuple[list[Case], list[str]]:
    index = json.loads((folder / CASES_FILE).read_text())
    cases = []
    for entry in index["cases"]:
        raw = {name: np.load(folder / file, allow_pickle=False) for name, file in entry["inputs"].items()}
        expected = [np.load(folder / file, allow_pickle=False) for file in entry["outputs"]]
        cases.append(Case(entry["id"], entry["shape"], raw, expected))
    return cases, index["outputs"]


def load_data_file(path: Path, inputs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Real samples from ``validate.data``: arrays keyed by input name; images HWC or NHWC uint8.

    Raises ValueError with a sentence a person can act on; the caller adds the location.
    """
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path.name} as an .npz of arrays: {exc}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"expected an .npz of arrays keyed by input name, got a single array in {path.name}")
    with data:
        arrays = {key: data[key] for key in data.files}
    names = [i["name"] for i in inputs]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ValueError(f"{path.name} has no array for input(s) {', '.join(missing)} (it has {', '.join(sorted(arrays)) or 'none'})")
    raw = {}
    for inp in inputs:
        array = arrays[inp["name"]]
        if inp["kind"] == "image":
            if array.dtype != np.uint8 or array.ndim not in (3, 4):
                raise ValueError(f"{path.name}: image input {inp['name']!r} must be uint8 HWC or NHWC pixels, got {array.dtype} {list(array.shape)}")
            array = array[None] if array.ndim == 3 else array
        else:
            array = array.astype(np.dtype(inp["dtype"]))
        raw[inp["name"]] = array
    return raw


def at_default_shapes(inputs: list[dict[str, Any]], raw: dict[str, np.ndarray]) -> bool:
    """Whether a sample has every input at its default shape (all a fixed-shape artifact takes)."""
    return all(list(f.shape) == shape_at(i, "default") for i, f in zip(inputs, model_feeds(inputs, raw)))
