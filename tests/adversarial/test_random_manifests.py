"""Property: whatever document a manifest file holds, ``check`` accepts it (exit 0) or refuses
it with exit 2 and messages, never a traceback. Documents are generated near the real shape
(known field names, plausible values) so that they reach deep into the checks."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelbuild.cli import commands as cli

FIELDS = [
    "name",
    "version",
    "source",
    "factory",
    "weights",
    "args",
    "strict",
    "code",
    "torchscript",
    "exported_program",
    "wrapper",
    "replace",
    "class",
    "capture",
    "mode",
    "check",
    "trace_submodules",
    "inputs",
    "kind",
    "shape",
    "shapes",
    "default_shape",
    "dtype",
    "range",
    "color_layout",
    "scale",
    "bias",
    "normalize",
    "mean",
    "std",
    "outputs",
    "select",
    "metadata",
    "classes",
    "classes_file",
    "classifier",
    "probabilities",
    "preview",
    "user",
    "targets",
    "coreml",
    "onnx",
    "executorch",
    "torchscript",
    "format",
    "deployment_target",
    "precision",
    "compute_units",
    "optimize",
    "quantize",
    "palettize",
    "prune",
    "validate",
    "samples",
    "atol",
    "rtol",
    "data",
    "on_failure",
    "benchmark",
    "runs",
    "warmup",
    "backends",
    "variants",
    "plugins",
    "prepare",
    "min",
    "max",
    "default",
    "models",
    "opset",
    "backend",
    "lite",
    "compat",
    "nbits",
    "sparsity",
    "description",
    "author",
]
TEXT = st.sampled_from(
    [
        "models.tiny:build",
        "x",
        "image",
        "tensor",
        "RGB",
        "float32",
        "int32",
        "mlprogram",
        "iOS17",
        "default",
        "../weights/tiny.safetensors",
        "/etc/passwd",
        "../../..",
        "1/../../x",
        "",
        "report.json",
        "out",
        "0",
        "max",
        "float16",
        "trace",
        "script",
        "export",
        "linear_symmetric",
        "a" * 300,
    ]
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**40), max_value=2**40), st.floats(allow_nan=True, allow_infinity=True), TEXT, st.text(max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=6)),
    max_leaves=40,
)
VALID = {
    "name": "tiny",
    "source": {"factory": "models.tiny:build", "weights": "../weights/tiny.safetensors"},
    "inputs": [{"name": "x", "shape": [1, 4]}],
    "outputs": [{"name": "y", "select": "out"}],
    "targets": {"torchscript": {}},
}


def mutate(base: dict, path: list[str], value: object) -> dict:
    document = json.loads(json.dumps(base))
    node = document
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return document


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.test_reliability import tiny_project

    return tiny_project(tmp_path_factory.mktemp("random"))


def check(project: Path, text: str, suffix: str = ".yaml") -> tuple[int, str]:
    manifest = project / "manifests" / f"random{suffix}"
    manifest.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main(["check", str(manifest)])
        except SystemExit as exit:  # argparse only; never for a document
            code = int(exit.code or 0)
    manifest.unlink()
    return code, out.getvalue() + err.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=VALUES)
def test_any_document_is_accepted_or_refused_cleanly(project: Path, document: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    code, output = check(project, yaml.safe_dump(document, allow_unicode=True))
    assert code in (0, 2), output
    assert "Traceback" not in output
    if code == 2:
        assert "error:" in output


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3), value=VALUES)
def test_a_valid_manifest_with_one_field_changed_is_accepted_or_refused_cleanly(
    project: Path, path: list[str], value: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    code, output = check(project, yaml.safe_dump(mutate(VALID, path, value), allow_unicode=True))
    assert code in (0, 2), output
    assert "Traceback" not in output


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_cleanly(project: Path, raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    manifest = project / "manifests" / "random.yaml"
    manifest.write_bytes(raw)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["check", str(manifest)])
    manifest.unlink()
    assert code in (0, 2) and "Traceback" not in out.getvalue() + err.getvalue()


def test_the_unchanged_valid_manifest_is_accepted(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    code, output = check(project, yaml.safe_dump(VALID))
    assert code == 0, output
