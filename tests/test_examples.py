"""The user stories, end to end, on the example manifests: real torch and coremltools."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import copy_examples, run_cli

EXAMPLES = ["classifier", "generator", "gpt", "lstm", "segmenter"]


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def statuses(root: Path) -> dict[str, str]:
    report = json.loads((root / "build" / "report.json").read_text())
    return {f"{m}:{s}": e["status"] for m, v in report["models"].items() for s, e in v["stages"].items()}


def test_every_example_converts_to_a_package(built_examples: Path) -> None:
    for name in EXAMPLES:
        package = built_examples / "build" / name / f"{name}.mlpackage"
        assert (package / "Manifest.json").is_file()
        assert (package / "Data" / "com.apple.CoreML" / "model.mlmodel").is_file()
        assert (built_examples / "build" / name / "logs" / "coreml.convert.log").is_file()
    assert set(statuses(built_examples).values()) <= {"built", "cached", "skipped"}


def stage_entry(root: Path, model: str, stage: str) -> dict:
    return json.loads((root / "build" / "report.json").read_text())["models"][model]["stages"][stage]


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_artifact_is_built_and_verified_against_pytorch(built_examples: Path, name: str) -> None:
    folder = built_examples / "build" / name
    for target, suffix in (("onnx", "onnx"), ("executorch", "pte"), ("torchscript", "pt")):
        assert (folder / f"{name}.{suffix}").is_file()
        verify = stage_entry(built_examples, name, f"{target}.verify")
        assert verify["info"]["verdict"] == "pass", verify
        assert verify["info"]["samples"] >= 2
        # The generator's outputs are pixel values (0..255): the same relative error is 255 times larger.
        bound = 5e-2 if name == "generator" else 1e-2
        for output in verify["info"]["outputs"]:
            assert output["max_abs"] <= bound and output["cosine"] > 0.9999
    # Core ML packages of both formats run in the Linux executors, from the package bytes:
    # no coreml.verify of any example is skipped.
    coreml = stage_entry(built_examples, name, "coreml.verify")
    assert coreml["status"] in ("built", "cached") and coreml["info"]["verdict"] == "pass", coreml
    float32 = name in ("gpt", "generator")  # gpt sets precision float32; the generator is a neuralnetwork package
    # float16 programs get the float16 default; the generator declares validate.atol 0.01 for its 0..255 pixels
    assert coreml["info"]["atol"] == (0.01 if name == "generator" else 1e-3 if float32 else 0.05)
    if name == "generator":  # unbounded H and W: default, min and two non-square sizes, one larger than the default
        assert coreml["info"]["samples"] == 8


def test_flexible_shapes_are_verified_at_min_default_and_max(built_examples: Path) -> None:
    import onnx

    cases = json.loads((built_examples / "cache" / "objects").joinpath(*_reference_path(built_examples, "segmenter")).read_text())
    assert {c["shape"] for c in cases["cases"]} == {"default", "min", "max", "validate.data"}
    assert stage_entry(built_examples, "segmenter", "onnx.verify")["info"]["samples"] == 7  # 2 per shape + the photo
    graph = onnx.load(str(built_examples / "build" / "segmenter" / "segmenter.onnx")).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [False, False, True, True]  # H and W stay dynamic
    opsets = {o.domain: o.version for o in onnx.load(str(built_examples / "build" / "gpt" / "gpt.onnx")).opset_import}
    assert opsets[""] == 18  # targets.onnx.opset
    assert (built_examples / "build" / "lstm" / "lstm.ptl").is_file()  # lite: true
    lstm_et = stage_entry(built_examples, "lstm", "executorch.verify")
    assert "fixed_shapes: verified at the default shapes only (2 samples)" in lstm_et["notes"]


def _reference_path(root: Path, model: str) -> tuple[str, ...]:
    digest = stage_entry(root, model, "reference")["output"]
    return (digest[:2], digest, "cases.json")


def test_bench_prints_the_latency_table_and_writes_markdown(built_examples: Path) -> None:
    result = run_cli(built_examples, "bench", "manifests", "--model", "generator", "--model", "gpt")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "modelbuild bench" in result.stdout
    assert "image=1×3×512×512" in result.stdout
    page = (built_examples / "build" / "bench.md").read_text()
    for backend in ("torch", "onnx", "executorch", "torchscript"):
        assert f"| generator | {backend} | image=1×3×512×512 |" in page
    assert "- generator · coreml: Core ML timing needs macOS" in page
    rows = stage_entry(built_examples, "gpt", "onnx.bench")["info"]["bench"]
    assert rows[0]["runs"] == 3 and rows[0]["mean_ms"] > 0 and rows[0]["speedup"] > 0 and rows[0]["size"] > 0


def test_packages_carry_manifest_metadata(built_examples: Path) -> None:
    from modelbuild.coreml.package_io import read_spec

    spec = read_spec(built_examples / "build" / "classifier" / "classifier.mlpackage")
    meta = spec.description.metadata
    assert meta.author == "modelbuild examples"  # from the project [defaults]
    assert meta.versionString == "1.0.0"
    assert meta.userDefined["dataset"] == "synthetic"
    assert meta.userDefined["com.apple.coreml.model.preview.type"] == "imageClassifier"
    assert "com.github.apple.coremltools.conversion_date" not in meta.userDefined
    assert [o.name for o in spec.description.output] == ["classLabel", "probabilities"]
    image = spec.description.input[0]
    assert image.name == "image" and image.type.WhichOneof("Type") == "imageType"
    seg = read_spec(built_examples / "build" / "segmenter" / "segmenter.mlpackage")
    ranges = seg.description.input[0].type.imageType.imageSizeRange
    assert (ranges.heightRange.lowerBound, ranges.heightRange.upperBound) == (64, 512)
    gen = read_spec(built_examples / "build" / "generator" / "generator.mlpackage")
    assert gen.WhichOneof("Type") == "neuralNetwork"
    assert gen.description.input[0].type.imageType.imageSizeRange.heightRange.upperBound == -1  # unbounded
    gpt = read_spec(built_examples / "build" / "gpt" / "gpt.mlpackage")
    assert gpt.description.input[0].type.multiArrayType.dataType == 131104  # INT32


def test_noop_rebuild_is_all_cached_and_imports_no_converter(built_examples: Path) -> None:
    code = (
        "import sys; from modelbuild.cli import main; rc = main(['build', 'manifests']); "
        "assert 'torch' not in sys.modules, 'torch imported'; assert 'coremltools' not in sys.modules; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=built_examples, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(statuses(built_examples).values()) == {"cached", "skipped"}


def test_incremental_rebuilds(tmp_path: Path) -> None:
    root = copy_examples(tmp_path)
    only = ["--model", "lstm", "--target", "coreml"]
    assert run_cli(root, "build", "manifests", *only).returncode == 0
    # Touching a file changes nothing.
    (root / "manifests" / "weights" / "lstm.safetensors").touch()
    assert run_cli(root, "build", "manifests", *only).returncode == 0
    assert set(statuses(root).values()) == {"cached", "skipped"}
    # Metadata only: only the package stage of that model.
    manifest = root / "manifests" / "lstm.toml"
    manifest.write_text(manifest.read_text().replace("A tiny LSTM sequence classifier", "An LSTM classifier"))
    plan = run_cli(root, "plan", "manifests", *only)
    assert "metadata.description" in plan.stdout
    assert run_cli(root, "build", "manifests", *only).returncode == 0
    # Only the package is rebuilt, and the new package's bytes are verified again.
    assert {k for k, v in statuses(root).items() if v == "built"} == {"lstm:coreml.package"}  # the spec: metadata re-runs only the package
    # New weights: only that model, and its reference outputs and eager baseline.
    from safetensors.torch import load_file, save_file

    weights = root / "manifests" / "weights" / "lstm.safetensors"
    state = load_file(str(weights))
    state["head.bias"] = state["head.bias"] + 1.0
    save_file(state, str(weights))
    assert run_cli(root, "build", "manifests", *only).returncode == 0
    built = {k for k, v in statuses(root).items() if v == "built"}
    assert built == {
        "lstm:source",
        "lstm:capture",
        "lstm:reference",
        "lstm:coreml.convert",
        "lstm:coreml.optimize",
        "lstm:coreml.package",
        "lstm:coreml.verify",
        "lstm:torch.bench",
    }


def test_two_builds_from_empty_caches_are_byte_identical(built_examples: Path, tmp_path: Path) -> None:
    root = copy_examples(tmp_path)
    result = run_cli(root, "build", "manifests", "--model", "classifier", "--model", "gpt", "--model", "lstm")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("classifier", "gpt", "lstm"):
        first = tree_bytes(built_examples / "build" / name / f"{name}.mlpackage")
        second = tree_bytes(root / "build" / name / f"{name}.mlpackage")
        assert first.keys() == second.keys()
        assert [k for k in first if first[k] != second[k]] == [], name
        for suffix in ("onnx", "pte", "pt", "ptl"):
            if not (built_examples / "build" / name / f"{name}.{suffix}").exists():
                continue
            artifact = f"{name}.{suffix}"
            assert (built_examples / "build" / name / artifact).read_bytes() == (root / "build" / name / artifact).read_bytes(), artifact


def test_the_committed_lock_passes_build_locked(built_examples: Path) -> None:
    """A fresh clone's committed modelbuild.lock matches what this machine builds."""
    shutil.copyfile(Path(__file__).resolve().parent.parent / "modelbuild.lock", built_examples / "modelbuild.lock")
    report = (built_examples / "build" / "report.json").read_bytes()  # the other tests read the full build's report
    result = run_cli(built_examples, "build", "manifests", "--no-bench", "--locked")
    (built_examples / "build" / "report.json").write_bytes(report)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error: --locked" not in result.stderr


def test_bad_factory_and_weights_are_user_errors_and_others_build(tmp_path: Path) -> None:
    root = copy_examples(tmp_path)
    seg = root / "manifests" / "segmenter.yaml"
    seg.write_text(seg.read_text().replace("models.segmenter:build", "models.nowhere:build"))
    lstm = root / "manifests" / "lstm.toml"
    lstm.write_text(lstm.read_text().replace("hidden = 32", "hidden = 16"))
    result = run_cli(root, "build", "manifests", "--keep-going", "--model", "segmenter", "--model", "lstm", "--model", "classifier")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: manifests/segmenter.yaml:5: source.factory: cannot find module 'models.nowhere'" in result.stderr
    assert "error: manifests/lstm.toml: source.weights: the weights do not match the model: shape mismatch" in result.stderr
    assert (root / "build" / "classifier" / "classifier.mlpackage").is_dir()
    assert statuses(root)["classifier:coreml.package"] == "built"


def test_stage_failure_log_and_exit_code(tmp_path: Path) -> None:
    root = copy_examples(tmp_path)
    (root / "manifests" / "models" / "broken.py").write_text(
        "import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        return torch.cummax(x, 1)[0]\n\ndef build():\n    return M()\n"
    )
    (root / "manifests" / "broken.yaml").write_text("name: broken\nsource: {factory: 'models.broken:build'}\ninputs: [{name: x, shape: [1, 8]}]\n")
    result = run_cli(root, "build", "manifests", "--model", "broken")
    assert result.returncode == 1
    assert "broken: coreml.convert failed: coremltools cannot convert the PyTorch operator" in result.stderr
    assert "(log: build/broken/logs/coreml.convert.log)" in result.stderr
    assert (root / "build" / "broken" / "logs" / "coreml.convert.log").stat().st_size > 0
    shutil.rmtree(root / "build")


def test_predict_runs_a_package_on_a_photo(built_examples: Path, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    rows, cols = np.mgrid[0:96, 0:160]
    Image.fromarray(np.stack([rows * 2, cols, rows + cols], -1).astype(np.uint8)).save(tmp_path / "photo.png")
    out = tmp_path / "seg.npz"
    result = run_cli(built_examples, "predict", "build/segmenter/segmenter.mlpackage", "--input", f"image={tmp_path / 'photo.png'}", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("logits: shape [1, 4, 96, 160], min ")
    assert result.stderr == ""  # no coremltools import noise
    with np.load(out) as saved:
        assert saved["logits"].shape == (1, 4, 96, 160)
    wrong = run_cli(built_examples, "predict", "build/segmenter/segmenter.mlpackage", "--input", f"img={tmp_path / 'photo.png'}")
    assert wrong.returncode == 2 and "error: --input: the model has no input 'img'; its inputs: image" in wrong.stderr
    small = Image.new("RGB", (32, 32))
    small.save(tmp_path / "small.png")
    tiny = run_cli(built_examples, "predict", "build/segmenter/segmenter.mlpackage", "--input", f"image={tmp_path / 'small.png'}")
    assert tiny.returncode == 2 and "image height 32 is outside the model's range 64..512" in tiny.stderr
    # A neuralnetwork package (unbounded H and W) runs too, at any size above its minimum, and
    # computes what the TorchScript artifact computes on the same pixels.
    stylized = run_cli(built_examples, "predict", "build/generator/generator.mlpackage", "--input", f"image={tmp_path / 'photo.png'}", "--out", str(out))
    assert stylized.returncode == 0 and stylized.stdout.startswith("stylized: shape [1, 3, 96, 160], min "), stylized.stdout + stylized.stderr
    import torch

    pixels = torch.from_numpy(np.asarray(Image.open(tmp_path / "photo.png").convert("RGB"))).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        eager = torch.jit.load(str(built_examples / "build" / "generator" / "generator.pt"))(pixels * (2 / 255) - 1)
    with np.load(out) as saved:
        np.testing.assert_allclose(saved["stylized"], eager.numpy(), atol=1e-2)


def test_the_compression_example_shrinks_each_variant_and_verifies_it(built_examples: Path) -> None:
    report = json.loads((built_examples / "build" / "report.json").read_text())
    sizes = {(r["model"], r["target"]): r for r in report["sizes"]}
    limits = {
        ("mobilenet-int8", "coreml"): 0.55,
        ("mobilenet-palettized", "coreml"): 0.3,
        ("mobilenet-pruned", "coreml"): 0.6,
        ("mobilenet-int8", "executorch"): 0.3,
        ("mobilenet-int8", "onnx"): 0.3,
    }
    for key, limit in limits.items():
        assert sizes[key]["ratio"] < limit and sizes[key]["verdict"] == "pass", sizes[key]
    assert (
        report["models"]["mobilenet-int8"]["stages"]["coreml.convert"]["output"] == report["models"]["mobilenet"]["stages"]["coreml.convert"]["output"]
    )  # one conversion for all variants
    compared = {r["backend"]: r["vs_float"] for r in report["bench"] if r["model"] == "mobilenet-int8" and "vs_float" in r}
    assert set(compared) == {"executorch", "onnx"} and all(v > 0 for v in compared.values())


def test_the_plugin_example_builds_cleanly(built_examples: Path) -> None:
    verify = stage_entry(built_examples, "smooth", "coreml.verify")
    assert verify["info"]["verdict"] == "pass" and verify["info"]["outputs"][0]["max_abs"] < 1e-4


def test_onnx_models_carry_the_manifest_metadata(built_examples: Path) -> None:
    import onnx

    model = onnx.load(str(built_examples / "build" / "classifier" / "classifier.onnx"))
    assert model.doc_string == "A tiny image classifier (example)"
    props = {p.key: p.value for p in model.metadata_props}
    assert props["version"] == "1.0.0" and props["user.dataset"] == "synthetic" and "com.modelbuild.version" in props


def test_explain_names_the_overflowing_module_and_its_way_out_fixes_it(built_examples: Path, tmp_path: Path) -> None:
    # As shipped, the example keeps model.norm in float32 and verifies.
    fixed = run_cli(built_examples, "explain", "rmsnorm")
    assert fixed.returncode == 0 and "stays within tolerance of its float32 shadow at every op" in fixed.stdout, fixed.stdout + fixed.stderr
    assert stage_entry(built_examples, "rmsnorm", "coreml.verify")["info"]["verdict"] == "pass"
    # Without the switch the float16 program overflows: the failed verification says where.
    root = copy_examples(tmp_path)
    manifest = root / "manifests" / "rmsnorm.yaml"
    manifest.write_text(manifest.read_text().replace("    float32_modules: [model.norm]\n", "").replace("  coreml:\n", "  coreml: {}\n"))
    failed = run_cli(root, "build", "manifests/rmsnorm.yaml", "--no-bench")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    notes = stage_entry(root, "rmsnorm", "coreml.verify")["notes"]
    assert any(n.startswith("explain: first op that departs: mul ") and "module model.norm (RMSNorm)" in n and "past ±65504" in n for n in notes), notes
    assert any("way out: targets.coreml.float32_modules: [model.norm]" in n for n in notes), notes
    explained = run_cli(root, "explain", "rmsnorm", "manifests/rmsnorm.yaml")
    assert explained.returncode == 0 and "(float16 overflow: past ±65504)" in explained.stdout, explained.stdout + explained.stderr


def test_a_generation_loop_converts_to_a_while_loop_and_generates_the_same_tokens(built_examples: Path, tmp_path: Path) -> None:
    for target in ("coreml", "torchscript"):
        verify = stage_entry(built_examples, "generate", f"{target}.verify")["info"]
        assert verify["verdict"] == "pass" and verify["samples"] == 6, verify
        assert verify["outputs"][0]["max_abs"] == 0  # greedy decoding: the same tokens, one for one
    from modelbuild.coreml.package_io import read_spec

    spec = read_spec(built_examples / "build" / "generate" / "generate.mlpackage")
    assert b"while_loop" in spec.SerializeToString()
    # Graph formats that torch.export feeds cannot hold a loop whose length is computed: said so.
    root = copy_examples(tmp_path)
    manifest = root / "manifests" / "generate.yaml"
    manifest.write_text(manifest.read_text().replace("  torchscript: {}\n", "  torchscript: {}\n  onnx: {}\n  executorch: {}\n"))
    result = run_cli(root, "build", "manifests/generate.yaml", "--target", "onnx", "--target", "executorch", "--keep-going", "--no-bench")
    assert result.returncode == 1, result.stdout + result.stderr
    for target in ("ONNX", "ExecuTorch"):
        assert f"torch.export cannot capture it, so {target} cannot hold it" in result.stderr, result.stderr


@pytest.mark.parametrize("name", ["textclassifier", "imageclassifier", "onnxsegmenter"])
def test_real_world_examples_verify_every_target_at_every_shape(built_examples: Path, name: str) -> None:
    """The transformers examples (text with two inputs sharing `seq`, a flexible-size ResNet) and
    the ONNX-file example pass Core ML, ONNX and ExecuTorch verification at min, default and max."""
    shapes = {"default", "min", "max"} if name != "onnxsegmenter" else {"default"}
    for target in ("coreml", "onnx", "executorch"):
        verify = stage_entry(built_examples, name, f"{target}.verify")
        assert verify["info"]["verdict"] == "pass", verify
    cases = json.loads((built_examples / "cache" / "objects").joinpath(*_reference_path(built_examples, name)).read_text())
    assert {c["shape"] for c in cases["cases"]} == shapes


def test_a_shared_dimension_is_one_symbol_in_every_artifact(built_examples: Path) -> None:
    import onnx

    from modelbuild.coreml.package_io import read_spec

    graph = onnx.load(str(built_examples / "build" / "textclassifier" / "textclassifier.onnx")).graph
    assert [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input] == [[1, "seq"], [1, "seq"]]
    spec = read_spec(built_examples / "build" / "textclassifier" / "textclassifier.mlpackage")
    ranges = [[(r.lowerBound, r.upperBound) for r in i.type.multiArrayType.shapeRange.sizeRanges] for i in spec.description.input]
    assert ranges == [[(1, 1), (1, 128)], [(1, 1), (1, 128)]]
    # transformers' masking code converted without a plugin (new_ones and friends are built in).
    assert stage_entry(built_examples, "textclassifier", "coreml.convert")["status"] in ("built", "cached")


def test_an_onnx_source_is_verified_against_onnx_runtime_on_the_file(built_examples: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    from modelbuild.checks.cases import pixels_to_tensor, read_cases

    digest = stage_entry(built_examples, "onnxsegmenter", "reference")["output"]
    cases, names = read_cases(built_examples / "cache" / "objects" / digest[:2] / digest)
    assert names == ["logits"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as the reference stage runs it
    session = ort.InferenceSession(str(built_examples / "manifests" / "models" / "segmenter.onnx"), options, providers=["CPUExecutionProvider"])
    image = {"kind": "image", "scale": 0.00392156862745098, "bias": [0.0, 0.0, 0.0], "color_layout": "RGB"}
    for case in cases:
        [out, _aux] = session.run(None, {"image": pixels_to_tensor(image, case.raw["image"])})
        assert np.array_equal(case.expected[0], out)  # the reference is ONNX Runtime's "out" itself
