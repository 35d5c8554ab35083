"""The build record: statuses, roles and exit codes, and report.json as its document."""

from __future__ import annotations

import json
from pathlib import Path

from modelbuild.report import BuildReport, StageResult, Status, role_of
from modelbuild.report.document import to_json, write_report
from modelbuild.report.reasons import UNSET, Reason, Why, describe


def test_a_status_is_the_string_report_json_and_the_terminal_show() -> None:
    assert Status.WOULD_RUN == "would run" and str(Status.BUILT) == "built" and f"{Status.NOT_RUN}" == "not run"
    assert json.dumps({"s": Status.CACHED}) == '{"s": "cached"}'


def test_roles_come_from_the_stages_not_their_names() -> None:
    assert role_of("capture") == "build" and role_of("onnx.export") == "build"
    assert role_of("onnx.verify") == "verify" and role_of("coreml.verify") == "verify"
    assert role_of("onnx.bench") == "measure" and role_of("torch.bench") == "measure"
    assert role_of("no.such.stage") == "build"


def test_exit_code_is_two_for_a_user_error_one_for_a_failed_stage() -> None:
    ok = BuildReport([StageResult("m", "capture", Status.BUILT)])
    stage = BuildReport([StageResult("m", "capture", Status.FAILED, error_kind="stage")])
    user = BuildReport([StageResult("m", "capture", Status.FAILED, error_kind="stage"), StageResult("n", "capture", Status.FAILED, error_kind="user")])
    assert (ok.exit_code, stage.exit_code, user.exit_code) == (0, 1, 2)


def test_report_json_counts_statuses_and_drops_tracebacks(tmp_path: Path) -> None:
    report = BuildReport(
        [
            StageResult("m", "capture", Status.BUILT, seconds=1.23456, traceback="Traceback ..."),
            StageResult("m", "onnx.verify", Status.SKIPPED, reasons=[Reason(Why.SKIPPED, text="why")]),
        ],
        seconds=2.0,
    )
    data = to_json(report)
    assert data["counts"] == {"built": 1, "skipped": 1}
    assert data["models"]["m"]["stages"]["capture"] == {"status": "built", "reason": "", "seconds": 1.235}
    assert data["models"]["m"]["stages"]["onnx.verify"]["reason"] == "why"
    assert data["models"]["m"]["stages"]["onnx.verify"]["reasons"] == [{"why": "skipped", "text": "why"}]
    path = tmp_path / "out" / "report.json"
    write_report(report, path)
    assert json.loads(path.read_text()) == json.loads(json.dumps(data)) and not list(path.parent.glob("*.tmp"))


def test_reasons_are_data_and_one_function_words_them() -> None:
    reasons = [
        Reason(Why.FILE, "weights.bin", change="changed"),
        Reason(Why.FIELD, "metadata.author", "someone", UNSET),
        Reason(Why.TOOL, "torch", "2.12.0", "2.13.0"),
        Reason(Why.EARLY_CUTOFF, "capture"),
    ]
    assert describe(reasons) == "weights.bin changed; metadata.author: 'someone' → (unset); torch 2.12.0 → 2.13.0; early cutoff: capture output unchanged"
    assert json.loads(json.dumps(reasons[1].to_json())) == {"why": "field", "subject": "metadata.author", "before": "someone", "after": "(unset)"}
    assert describe([Reason(Why.FIELD, "x", "a" * 100, 1)]).startswith("x: 'aaaa") and "..." in describe([Reason(Why.FIELD, "x", "a" * 100, 1)])
