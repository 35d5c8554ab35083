"""The build summary's words for what a stage did."""

from __future__ import annotations

import io

from modelbuild.cli.terminal import Terminal
from modelbuild.report import BuildReport, StageResult, Status


def _rendered(result: StageResult) -> str:
    out = io.StringIO()
    terminal = Terminal(file=out, force_plain=True)
    table = terminal.summary(BuildReport([result]))
    terminal.console.print(table)
    return out.getvalue()


def test_a_refused_weights_patch_says_why_the_stage_converted_in_full() -> None:
    """After a weights-only change a user waits on a full conversion: the row says why."""
    why = "the previous program cannot be patched: XNNPACK folded a batch norm (fused_bn)"
    built = StageResult("classifier", "executorch.export", Status.BUILT, info={"patch_refused": why})
    text = " ".join(_rendered(built).split())
    assert "converted in full, not patched" in text and "fused_bn" in text
    patched = StageResult("gpt", "executorch.export", Status.BUILT, info={"constants_patched": True})
    assert "converted in full" not in _rendered(patched)
    cached = StageResult("classifier", "executorch.export", Status.CACHED, info={"patch_refused": why})
    assert "converted in full" not in _rendered(cached)  # said once, by the build that did it
