"""Bad manifests: one clear message each (file, line, field, expected, found), exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbuild.cli import main
from modelbuild.errors import ManifestError
from modelbuild.manifest.load import load_models

GOOD = """\
name: tiny
source:
  factory: models.tiny:build
inputs:
  - name: x
    shape: [1, {min: 2, max: 8, default: 4}]
"""


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "tiny.py").write_text("def build():\n    raise SystemExit('not called by check')\n")
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str, name: str = "m.yaml") -> list[str]:
    path = write(tmp_path, text, name)
    with pytest.raises(ManifestError) as info:
        load_models([path], tmp_path)
    return info.value.problems


def test_good_manifest_loads_with_defaults(tmp_path: Path) -> None:
    [model] = load_models([write(tmp_path, GOOD)], tmp_path)
    assert model.data["capture"]["mode"] == "trace"
    assert model.data["targets"] == {
        "coreml": {
            "format": "mlprogram",
            "deployment_target": "iOS15",
            "precision": "float16",
            "compute_units": "all",
            "float32_modules": [],
            "optimize": [],
            "compat": {"float16_pruning": True, "resize_to_input": True, "script_conv_bias": True, "transformers_ops": True},
            "validate": {"atol": 0.05, "rtol": 0.05, "on_failure": "error"},
        }
    }
    assert model.data["benchmark"]["backends"] == ["torch", "coreml"]


def test_variants_become_models_with_only_their_targets_and_cite_their_own_lines(tmp_path: Path) -> None:
    text = GOOD + (
        "targets:\n  coreml: {deployment_target: iOS17}\n  onnx: {}\n"
        "variants:\n  small:\n    targets:\n      coreml:\n        optimize: [{prune: {sparsity: 0.5, threshold: 0.1}}]\n"
    )
    problems = None
    try:
        load_models([write(tmp_path, text)], tmp_path)
    except ManifestError as exc:
        problems = exc.problems
    assert problems and "targets.coreml.optimize[0].prune: expected exactly one of sparsity or threshold" in problems[0]
    line = text.splitlines().index("        optimize: [{prune: {sparsity: 0.5, threshold: 0.1}}]") + 1
    assert f":{line}: " in problems[0]  # the variant's own line, not the base model's
    base, variant = load_models([write(tmp_path, text.replace(", threshold: 0.1", ""))], tmp_path)
    assert variant.name == f"{base.name}-small" and sorted(variant.data["targets"]) == ["coreml"]
    assert variant.data["targets"]["coreml"]["deployment_target"] == "iOS17"  # merged over the base target
    assert variant.data["benchmark"]["backends"] == ["coreml"]  # the base model times eager torch


def test_target_tolerances_layer_target_then_model_then_defaults(tmp_path: Path) -> None:
    text = GOOD + "validate: {atol: 0.01}\ntargets:\n  coreml: {}\n  onnx: {validate: {rtol: 0.2}}\n  torchscript: {}\n"
    [model] = load_models([write(tmp_path, text)], tmp_path)
    targets = model.data["targets"]
    assert targets["coreml"]["validate"] == {"atol": 0.01, "rtol": 0.05, "on_failure": "error"}  # explicit model atol wins over float16's
    assert targets["onnx"]["validate"] == {"atol": 0.01, "rtol": 0.2, "on_failure": "error"}
    assert targets["torchscript"]["validate"] == {"atol": 0.01, "rtol": 1e-3, "on_failure": "error"}
    assert targets["onnx"]["opset"] == 18 and targets["torchscript"]["lite"] is False


def test_benchmark_and_validate_shapes_are_checked_against_the_inputs(tmp_path: Path) -> None:
    text = GOOD + ("benchmark:\n  shapes: [default, {x: [1, 9]}, {y: [1, 4]}, {x: [1, 2, 3]}]\n  backends: [torch, onnx]\nvalidate:\n  shapes: [middle]\n")
    assert problems(tmp_path, text) == [
        "m.yaml:11: validate.shapes[0]: expected 'default', 'min', 'max', or {input name: [concrete shape]}, got 'middle'",
    ]
    text = GOOD + "benchmark:\n  shapes: [default, {x: [1, 9]}, {y: [1, 4]}, {x: [1, 2, 3]}]\n  backends: [torch, onnx]\n"
    assert problems(tmp_path, text) == [
        "m.yaml:8: benchmark.shapes[1].x: expected dimension 1 within 2..8, got 9",
        "m.yaml:8: benchmark.shapes[2].y: expected an input name (x), got 'y'",
        "m.yaml:8: benchmark.shapes[3].x: expected 2 dimensions, got 3: [1, 2, 3]",
        "m.yaml:9: benchmark.backends[1]: expected 'torch' or a target of this model (coreml), got 'onnx'; add targets.onnx to build it",
    ]


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    [message] = problems(tmp_path, GOOD.replace("inputs:", "inputs: [oops"))
    assert message.startswith("m.yaml:")
    assert "invalid YAML" in message


def test_unknown_field_suggests_spelling(tmp_path: Path) -> None:
    [message] = problems(tmp_path, GOOD + "metdata: {author: me}\n")
    assert message == "m.yaml:7: metdata: unknown field 'metdata' (did you mean 'metadata'?)"


def test_wrong_type_says_expected_and_found(tmp_path: Path) -> None:
    [message] = problems(tmp_path, GOOD.replace("name: x", "name: x\n    dtype: float64"))
    assert message == "m.yaml:6: inputs[0].dtype: expected one of float32, float16, int32, int64, bool, got 'float64' (did you mean 'float16'?)"


def test_min_greater_than_max(tmp_path: Path) -> None:
    [message] = problems(tmp_path, GOOD.replace("{min: 2, max: 8, default: 4}", "{min: 9, max: 8}"))
    assert message == "m.yaml:6: inputs[0].shape[1]: expected min <= max, got min 9 > max 8"


def test_default_outside_range(tmp_path: Path) -> None:
    [message] = problems(tmp_path, GOOD.replace("default: 4", "default: 40"))
    assert message == "m.yaml:6: inputs[0].shape[1].default: expected a default within [2, 8], got 40"


def test_mlprogram_refuses_unbounded_dimension_before_converting(tmp_path: Path) -> None:
    text = GOOD.replace("{min: 2, max: 8, default: 4}", "{min: 2}") + "targets:\n  coreml: {format: mlprogram}\n"
    [message] = problems(tmp_path, text)
    assert message.startswith("m.yaml:6: inputs[0].shape[1]: expected a max for every flexible dimension")
    assert "use format 'neuralnetwork'" in message


def test_unbounded_dimension_defaults_to_neuralnetwork(tmp_path: Path) -> None:
    [model] = load_models([write(tmp_path, GOOD.replace("{min: 2, max: 8, default: 4}", "{min: 2}"))], tmp_path)
    assert model.data["targets"]["coreml"]["format"] == "neuralnetwork"


def test_missing_weights_file(tmp_path: Path) -> None:
    [message] = problems(tmp_path, GOOD.replace("build\n", "build\n  weights: w.safetensors\n"))
    assert message.startswith("m.yaml:4: source.weights: file not found: 'w.safetensors'")


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("default: 4", "default: 40") + "bogus: 1\n")
    assert len(found) == 1  # the schema error stops semantic checks of that model
    found = problems(tmp_path, GOOD.replace("default: 4", "default: 40").replace("name: x", "name: x\n    range: [5, 1]"))
    assert len(found) == 2


def test_duplicate_model_names_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, GOOD, "a.yaml")
    second = write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(ManifestError) as info:
        load_models([first, second], tmp_path)
    assert info.value.problems == ["b.yaml:1: name: model name 'tiny' is already used by a.yaml:1; names must be unique across the build"]


def test_name_with_path_separator(tmp_path: Path) -> None:
    [message] = problems(tmp_path, GOOD.replace("name: tiny", "name: ../evil"))
    assert message.startswith("m.yaml:1: name: expected a name of lower-case letters")


def test_toml_errors_have_no_invented_line(tmp_path: Path) -> None:
    text = 'name = "tiny"\n[source]\nfactory = "models.tiny:build"\n[[inputs]]\nname = "x"\nshape = [1, {min = 3, max = 2}]\n'
    [message] = problems(tmp_path, text, "m.toml")
    assert message == "m.toml: inputs[0].shape[1]: expected min <= max, got min 3 > max 2"


def test_models_list_fields_are_prefixed(tmp_path: Path) -> None:
    lines = GOOD.replace("default: 4", "default: 99").splitlines()
    text = "models:\n" + "\n".join(("  - " if i == 0 else "    ") + line for i, line in enumerate(lines)) + "\n"
    [message] = problems(tmp_path, text)
    assert message.startswith("m.yaml:7: models[0].inputs[0].shape[1].default:")


def test_image_input_needs_image_shape(tmp_path: Path) -> None:
    text = GOOD.replace("name: x", "name: x\n    kind: image")
    [message] = problems(tmp_path, text)
    assert message == "m.yaml:7: inputs[0].shape: expected an image shape [N, 3, H, W] for color_layout RGB, got rank 2"


def test_cli_check_exit_code_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, GOOD + "metdata: {}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "m.yaml"]) == 2
    err = capsys.readouterr().err
    assert "error: m.yaml:7: metdata: unknown field" in err
    assert "Traceback" not in err
    assert "nothing was built" not in err  # check builds nothing in any case
    assert main(["build", "m.yaml"]) == 2
    assert "nothing was built (--keep-going builds the valid models)." in capsys.readouterr().err


def test_check_never_imports_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    write(tmp_path, GOOD)
    code = (
        "import sys; from modelbuild.cli import main; rc = main(['check', 'm.yaml']); "
        "assert 'torch' not in sys.modules and 'coremltools' not in sys.modules; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_integer_range_needs_room_for_a_value(tmp_path: Path) -> None:
    text = GOOD.replace("shape: [1, {min: 2, max: 8, default: 4}]", "dtype: int32\n    shape: [1, 4]\n    range: [5, 5]")
    assert problems(tmp_path, text) == ["m.yaml:8: inputs[0].range: expected [low, high) with low < high for integer inputs (high is exclusive), got [5, 5]"]


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD + "1: b\n", "m.yaml:7: expected a text key, got 1 (a number); quote it: '1'"),
        (GOOD + "true: b\n", "m.yaml:7: expected a text key, got true (a boolean)"),
        (GOOD.replace("  factory: models.tiny:build\n", "  factory: models.tiny:build\n  args: {null: 3}\n"), "m.yaml:4: expected a text key, got null"),
        (
            GOOD.replace("  factory: models.tiny:build\n", '  factory: models.tiny:build\n  weights: "w\\0.pt"\n'),
            "m.yaml:4: source.weights: expected text without a NUL character",
        ),
    ],
    ids=["number-key", "boolean-key", "null-argument-name", "nul-in-a-path"],
)
def test_keys_that_are_not_text_and_text_with_a_nul_are_named_not_raised(tmp_path: Path, text: str, expected: str) -> None:
    """Both once ended in a traceback: difflib comparing a number with field names, and a path
    with a NUL handed to the operating system."""
    assert any(expected in problem for problem in problems(tmp_path, text)), problems(tmp_path, text)


def test_a_nul_in_a_toml_manifest_or_the_project_settings_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    toml = 'name = "tiny"\n[source]\nfactory = "models.tiny:build"\nweights = "w\\u0000.pt"\n'
    assert any("source.weights: expected text without a NUL character" in p for p in problems(tmp_path, toml, "m.toml"))
    (tmp_path / "modelbuild.toml").write_text('out_dir = "a\\u0000b"\n')
    import os

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["check", "m.toml"]) == 2
    finally:
        os.chdir(here)
    assert "out_dir: expected text without a NUL character" in capsys.readouterr().err
