"""A stage's outcome carries plain text: libraries colour their messages, and the summary,
report.json and bench.md showed the escape codes (found by an adversarial run)."""

from __future__ import annotations

import pickle

from modelbuild.graph.outcome import Outcome, plain


def test_notes_and_errors_lose_terminal_escape_sequences() -> None:
    coloured = "compat: \x1b[96mtorch.onnx\x1b[0m failed at \x1b[1;31mline 3\x1b[0m"
    outcome = Outcome.failed("stage", coloured, 1.0, notes=[coloured, "plain note"])
    assert outcome.error == "compat: torch.onnx failed at line 3"
    assert outcome.notes == ["compat: torch.onnx failed at line 3", "plain note"]
    assert pickle.loads(pickle.dumps(outcome)) == outcome  # it crosses process boundaries


def test_plain_keeps_ordinary_text_whole() -> None:
    text = "max abs 1e-3 [1, 3, 224, 224] ×2 — 100% (ReflectionPad2d)"
    assert plain(text) == text
