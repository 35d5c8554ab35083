"""modelbuild.lock on its own: what it records for each kind of stage, how a build is checked
against it, and that writing it is byte-stable."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbuild.errors import UserError
from modelbuild.release.lockfile import check_lock, locked_stages, read_lock, write_lock
from modelbuild.report import BuildReport, StageResult, Status
from modelbuild.report.reasons import Reason, Why

KEY, OUT, OTHER = "a" * 64, "b" * 64, "c" * 64


def report(*results: StageResult) -> BuildReport:
    return BuildReport(results=list(results))


def result(stage: str, status: Status = Status.BUILT, output: str = OUT, **extra: object) -> StageResult:
    return StageResult("m", stage, status, key=KEY, output=output, **extra)  # type: ignore[arg-type]


def test_each_stage_is_recorded_as_its_lock_kind_says() -> None:
    entries = locked_stages(
        report(
            result("capture"),
            result("reference", info={"figures": {"y": [0.5, 2.0]}}),
            result("onnx.verify", info={"verdict": "pass"}),
            result("onnx.bench"),  # a measurement: never locked
            result("onnx.export", status=Status.FAILED),  # no output: nothing to lock
        )
    )["m"]
    assert entries == {
        "capture": {"key": KEY, "output": OUT},
        "reference": {"key": KEY, "output": OUT, "check": "tolerance", "figures": {"y": [0.5, 2.0]}},
        "onnx.verify": {"key": KEY, "output": OUT, "check": "verdict", "verdict": "pass"},
    }


def test_written_lock_reads_back_and_a_second_write_changes_no_byte(tmp_path: Path) -> None:
    path = tmp_path / "modelbuild.lock"
    built = report(result("capture"), result("reference", info={"figures": {"y": [0.1, 1e-9]}}))
    write_lock(path, built, {})
    first = path.read_bytes()
    assert read_lock(path)["m"]["reference"]["figures"] == {"y": [0.1, 1e-9]}
    write_lock(path, built, read_lock(path))
    assert path.read_bytes() == first
    assert not list(tmp_path.glob(".modelbuild.lock.tmp-*"))


def test_other_bytes_under_the_same_key_fail_the_check_naming_both() -> None:
    lock = locked_stages(report(result("capture")))
    problems = check_lock(report(result("capture", output=OTHER)), lock).problems
    assert problems == [f"m: capture is not reproducible: this build produced {OTHER}, modelbuild.lock has {OUT}"]


def test_float_results_pass_within_the_tolerance_and_say_so() -> None:
    lock = locked_stages(report(result("reference", info={"figures": {"y": [0.5, 2.0]}})))
    close = check_lock(report(result("reference", output=OTHER, info={"figures": {"y": [0.5000001, 2.0]}})), lock)
    assert close.problems == [] and close.by_tolerance == ["m: reference"]
    far = check_lock(report(result("reference", output=OTHER, info={"figures": {"y": [0.6, 2.0]}})), lock)
    assert "its float results differ from modelbuild.lock beyond the tolerance" in far.problems[0]


def test_a_changed_verdict_fails_even_when_the_key_is_the_same() -> None:
    lock = locked_stages(report(result("onnx.verify", info={"verdict": "pass"})))
    problems = check_lock(report(result("onnx.verify", output=OTHER, info={"verdict": "fail"})), lock).problems
    assert problems == ["m: onnx.verify: verdict 'fail', modelbuild.lock has 'pass'"]


def test_a_stage_skipped_here_keeps_the_entry_another_machine_wrote(tmp_path: Path) -> None:
    path = tmp_path / "modelbuild.lock"
    mac = {"m": {"coreml.verify": {"key": KEY, "output": OUT, "check": "verdict", "verdict": "pass"}}}
    write_lock(path, report(result("capture"), StageResult("m", "coreml.verify", Status.SKIPPED, reasons=[Reason(Why.SKIPPED, text="needs macOS")])), mac)
    assert read_lock(path)["m"]["coreml.verify"]["verdict"] == "pass"


@pytest.mark.parametrize("text", ['[m]\ncapture = { key = "short", output = "x" }\n', "m = 1\n", "[m\n"])
def test_a_malformed_lock_is_a_user_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "modelbuild.lock"
    path.write_text(text)
    with pytest.raises(UserError, match=r"^modelbuild\.lock: "):
        read_lock(path)
