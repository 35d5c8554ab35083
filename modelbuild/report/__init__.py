"""The build report and its views. ``results`` is the record (one ``StageResult`` per stage);
``document`` (report.json), ``bench`` (bench.md and the bench table) and ``sizes`` read it."""

from modelbuild.report.results import SETTLED, BuildReport, StageResult, Status, role_of

__all__ = ["SETTLED", "BuildReport", "StageResult", "Status", "role_of"]
