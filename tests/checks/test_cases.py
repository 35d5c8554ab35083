"""Sample cases: shape choices, seeded generation, the image preprocessing contract, storage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelbuild.checks.cases import Case, at_default_shapes, generate, load_data_file, model_feeds, pixels_to_tensor, read_cases, shape_choices, write_cases
from modelbuild.checks.timing import interleaved, stats

IMAGE = {
    "name": "image",
    "kind": "image",
    "shape": [1, 3, {"min": 8, "max": 32, "default": 16}, 16],
    "scale": 2 / 255,
    "bias": [-1.0, -1.0, -1.0],
    "color_layout": "RGB",
}
TOKENS = {"name": "ids", "kind": "tensor", "dtype": "int32", "shape": [1, {"min": 1, "max": 64, "default": 4}], "range": [0, 10]}


def test_shape_choices_resolve_labels_and_concrete_shapes_and_drop_duplicates() -> None:
    choices = shape_choices([IMAGE], ["default", "min", "max", {"image": [1, 3, 24, 16]}, {"image": [1, 3, 16, 16]}])
    assert [(c.label, c.shapes["image"]) for c in choices] == [
        ("default", [1, 3, 16, 16]),
        ("min", [1, 3, 8, 16]),
        ("max", [1, 3, 32, 16]),
        ("image=1×3×24×16", [1, 3, 24, 16]),
    ]


def test_fixed_inputs_give_one_choice() -> None:
    fixed = {"name": "x", "kind": "tensor", "dtype": "float32", "shape": [1, 4]}
    assert len(shape_choices([fixed], ["default", "min", "max"])) == 1


def test_enumerated_shapes_are_each_a_case() -> None:
    enumerated = {"name": "x", "kind": "tensor", "dtype": "float32", "shapes": [[1, 4], [1, 8], [1, 16]]}
    choices = shape_choices([enumerated], ["default"], enumerated=True)
    assert [c.shapes["x"] for c in choices] == [[1, 4], [1, 8], [1, 16]]


def test_generation_is_seeded_typed_and_in_range() -> None:
    a = generate([IMAGE, TOKENS], {"image": [1, 3, 8, 16], "ids": [1, 5]}, seed=3)
    b = generate([IMAGE, TOKENS], {"image": [1, 3, 8, 16], "ids": [1, 5]}, seed=3)
    assert a["image"].dtype == np.uint8 and a["image"].shape == (1, 8, 16, 3)
    assert a["ids"].dtype == np.int32 and a["ids"].min() >= 0 and a["ids"].max() < 10
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["image"], generate([IMAGE], {"image": [1, 3, 8, 16]}, seed=4)["image"])


def test_pixels_become_tensors_through_the_declared_scale_and_bias() -> None:
    pixels = np.array([[[[0, 255, 51]]]], dtype=np.uint8)  # 1x1x1x3 NHWC
    tensor = pixels_to_tensor(IMAGE, pixels)
    assert tensor.shape == (1, 3, 1, 1)
    np.testing.assert_allclose(tensor.ravel(), [-1.0, 1.0, -0.6], atol=1e-6)


def test_cases_round_trip_byte_for_byte(tmp_path: Path) -> None:
    raw = generate([IMAGE, TOKENS], {"image": [1, 3, 16, 16], "ids": [1, 4]}, seed=0)
    case = Case("default-0", "default", raw, [np.ones((1, 2), np.float32)])
    for folder in (tmp_path / "a", tmp_path / "b"):
        folder.mkdir()
        write_cases(folder, [case], ["logits"])
    assert sorted(p.read_bytes() for p in (tmp_path / "a").iterdir()) == sorted(p.read_bytes() for p in (tmp_path / "b").iterdir())
    [back], names = read_cases(tmp_path / "a")
    assert names == ["logits"] and np.array_equal(back.raw["image"], raw["image"]) and back.expected[0].shape == (1, 2)
    assert at_default_shapes([IMAGE, TOKENS], back.raw)
    assert len(model_feeds([IMAGE, TOKENS], back.raw)) == 2


def test_data_file_needs_every_input_and_uint8_pixels(tmp_path: Path) -> None:
    np.savez(tmp_path / "good.npz", image=np.zeros((16, 16, 3), np.uint8))
    assert load_data_file(tmp_path / "good.npz", [IMAGE])["image"].shape == (1, 16, 16, 3)
    np.savez(tmp_path / "float.npz", image=np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="must be uint8 HWC or NHWC pixels, got float32"):
        load_data_file(tmp_path / "float.npz", [IMAGE])
    with pytest.raises(ValueError, match="has no array for input\\(s\\) ids"):
        load_data_file(tmp_path / "good.npz", [IMAGE, TOKENS])


def test_interleaved_timing_gives_every_callable_its_runs() -> None:
    calls = {"a": 0, "b": 0}

    def bump(name: str):
        return lambda: calls.__setitem__(name, calls[name] + 1)

    samples = interleaved({"a": bump("a"), "b": bump("b")}, warmup=2, count=5)
    assert calls == {"a": 7, "b": 7} and len(samples["a"]) == 5
    figures = stats([1.0, 2.0, 3.0, 4.0, 10.0])
    assert figures["p50_ms"] == 3.0 and figures["min_ms"] == 1.0 and figures["mean_ms"] == 4.0 and figures["runs"] == 5


def test_a_single_array_is_not_a_data_file(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="expected an .npz of arrays keyed by input name, got a single array in one.npy"):
        load_data_file(tmp_path / "one.npy", [IMAGE])


def test_auto_runs_stop_when_the_mean_is_stable_or_the_budget_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelbuild.checks import timing

    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])  # each call advances a fake clock

    def taking(durations: list[float]):
        cycle = iter(durations * 100000)
        return lambda: clock.__setitem__(0, clock[0] + next(cycle))

    samples, stopped = timing.adaptive({"a": taking([0.010, 0.0101]), "b": taking([0.002])}, warmup=1, budget_s=5.0)
    assert stopped == "stable" and len(samples["a"]) == len(samples["b"]) == timing.MIN_RUNS  # spread 0.5%: five runs say it
    samples, stopped = timing.adaptive({"a": taking([0.0, 0.020])}, warmup=0, budget_s=0.3)  # halves 0 and 20 ms: never known to 1%
    assert stopped == "budget" and timing.MIN_RUNS <= len(samples["a"]) <= 31
    samples, stopped = timing.adaptive({"a": taking([0.0, 0.00001])}, warmup=0, budget_s=3600)
    assert stopped == "limit" and len(samples["a"]) == timing.MAX_RUNS
