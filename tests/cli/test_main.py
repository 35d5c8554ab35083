"""Commands that never convert: schema, graph, check (fast, no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelbuild.cli import main
from tests.conftest import copy_examples


def test_schema_is_valid_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "models" in schema["oneOf"][1]["properties"]


def test_graph_lists_stages_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    copy_examples(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["graph", "manifests", "--model", "lstm", "--target", "coreml", "--no-bench"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [
        "lstm:source",
        "lstm:capture",
        "lstm:coreml.convert",
        "lstm:coreml.optimize",
        "lstm:coreml.package",
        "lstm:reference",
        "lstm:coreml.verify",
    ]
    assert main(["graph", "manifests", "--model", "lstm"]) == 0
    stages = {line.split()[0].split(":")[1] for line in capsys.readouterr().out.splitlines()}
    for target in ("coreml", "onnx", "executorch", "torchscript"):
        assert {f"{target}.verify", f"{target}.bench"} <= stages
    assert "torch.bench" in stages and "executorch.export" in stages
    assert "weights/lstm.safetensors" in lines[0]
    assert main(["graph", "manifests", "--dot", "--model", "gpt", "--model", "lstm"]) == 0
    dot = capsys.readouterr().out
    assert '"gpt:capture" -> "gpt:coreml.convert";' in dot
    assert 'subgraph "cluster_gpt" {\n    label="gpt";' in dot and 'subgraph "cluster_lstm"' in dot  # one box per model


def test_unknown_model_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    copy_examples(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "manifests", "--model", "lstmm"]) == 2
    assert "error: --model: expected the name of a model, got 'lstmm' (did you mean 'lstm'?)" in capsys.readouterr().err


def test_check_lists_every_example(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    copy_examples(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "manifests"]) == 0
    assert capsys.readouterr().out.strip().endswith("15 models valid")  # 12 manifests; mobilenet has 3 variants


def test_the_summary_is_compact_and_a_noop_prints_one_line(tmp_path: Path) -> None:
    from modelbuild.cli.terminal import Terminal
    from modelbuild.report import BuildReport, StageResult, Status

    def result(stage: str, status: Status, **info: object) -> StageResult:
        return StageResult("m", stage, status, info=dict(info))

    cached = BuildReport([result("capture", Status.CACHED), result("onnx.verify", Status.CACHED, summary="PASS y: max abs 0", verdict="pass")], seconds=0.1)
    terminal = Terminal(force_plain=True)
    assert terminal.nothing_to_do(cached, "modelbuild build") == "modelbuild build: nothing to do, 2 stages up to date (0.10s)"
    assert terminal.summary(cached, verbose=False) is None and terminal.summary(cached, verbose=True) is not None
    ran = BuildReport([*cached.results, result("onnx.export", Status.BUILT)], seconds=1.0)
    assert terminal.nothing_to_do(ran, "modelbuild build") is None
    table = terminal.summary(ran, verbose=False)
    assert table.row_count == 1  # only the stage that ran
    assert terminal.verify_table(ran).row_count == 1  # the cached verification's figures still show


@pytest.mark.parametrize("command", [["check"], ["graph"], ["cache", "gc"]])
def test_commands_that_run_nothing_take_no_verbose_flag(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "-v"])
    assert exit_info.value.code == 2 and "unrecognized arguments: -v" in capsys.readouterr().err


def test_the_live_display_reads_how_far_a_running_stage_is_from_its_log(tmp_path: Path) -> None:
    from modelbuild.cli.terminal import stage_progress

    log = tmp_path / "coreml.convert.log"
    log.write_text("note: something\nConverting PyTorch Frontend ==> MIL Ops: 100%|##| 11/11\rRunning MIL default pipeline:  45%|####  | 43/95 [00:01<00:01]")
    assert stage_progress(log) == "Running MIL default pipeline 45%"
    log.write_text("progress: default, 40 rounds, 6 of at most 20 s\n")
    assert stage_progress(log) == "default, 40 rounds, 6 of at most 20 s"
    log.write_text("a warning with no progress in it\n")
    assert stage_progress(log) is None and stage_progress(tmp_path / "missing.log") is None


def test_the_bench_table_never_cuts_a_shape_label() -> None:
    import io

    from modelbuild.cli.terminal import Terminal
    from modelbuild.report import BuildReport, StageResult, Status

    row = {"backend": "executorch", "shape": "image=1×3×512×512", "mean_ms": 123.456, "std_ms": 12.3, "p50_ms": 1.0, "p90_ms": 1.0, "min_ms": 1.0}
    row |= {"runs": 37, "stopped": "budget", "size": 58000, "torch_mean_ms": 100.0, "speedup": 0.67, "threads": 1}
    terminal = Terminal(file=io.StringIO(), force_plain=True)
    terminal.print(terminal.bench_table(BuildReport([StageResult("generator", "executorch.bench", Status.CACHED, info={"bench": [row]})])))
    out = terminal.console.file.getvalue()
    assert "image=1×3×512×512" in out and "37 (budget)" in out


@pytest.mark.parametrize("command", [["check", "manifests"], ["workers", "status"]])
def test_a_reader_that_went_away_is_not_an_error(tmp_path: Path, command: list[str]) -> None:
    """``modelbuild check manifests | head -1``: the reader closed the pipe; no "error: Broken
    pipe", no traceback, exit 0."""
    import os
    import subprocess
    import sys

    copy_examples(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # gone before the first line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "modelbuild", *command],
            cwd=tmp_path,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "MODELBUILD_WORKERS_DIR": str(tmp_path / "workers")},
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0, "")
