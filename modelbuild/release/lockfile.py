"""``modelbuild.lock``: every model's stage keys and output digests, meant to be committed.

Like Cargo.lock, it is rewritten by each build, and ``build --locked`` turns it into a
check: a stage whose key is unchanged must produce the bytes the lock records, so CI can
prove that a rebuild (``--locked --force``, or from an empty cache) is reproducible.

Not every output can be the same bytes on every machine: PyTorch's float results differ in
the last bits between CPUs (the kernels for AVX2 and AVX-512 accumulate in another order).
A stage says how the lock checks it (``Stage.lock``): ``bytes``; ``tolerance`` (the
reference outputs: their figures are compared within ``RTOL``/``ATOL``); ``verdict`` (a
verification must reach the same verdict); ``none`` (benchmarks: timings are measurements,
left out). Such an output enters the keys after it by its own key, so those keys are the
same on every machine, and a build on another CPU never rewrites an equivalent entry.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbuild.errors import UserError
from modelbuild.report import SETTLED, BuildReport, Status
from modelbuild.store.paths import replace_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HEADER = (
    "# modelbuild.lock: each stage's key (a digest of everything it reads) and output digest.\n"
    "# Written by `modelbuild build`; commit it. `modelbuild build --locked` fails when a stage\n"
    "# with the same key produces other bytes, or when a key no longer matches this file.\n"
    '# Entries with check = "tolerance" or "verdict" hold float results that differ in the\n'
    "# last bits between CPUs: --locked compares their figures or verdict instead of bytes.\n"
)

Lock = dict[str, dict[str, dict[str, Any]]]
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
RTOL = 1e-3
ATOL = 1e-5


def locked_stages(report: BuildReport) -> Lock:
    from modelbuild.stages import STAGES

    entries: Lock = {}
    for result in report.results:
        check = STAGES.get(result.stage).lock if result.stage in STAGES else "bytes"
        if check == "none" or result.status not in SETTLED or not result.key:
            continue
        entry: dict[str, Any] = {"key": result.lock_key or result.key, "output": result.output or ""}
        if check == "tolerance":
            entry.update(check="tolerance", figures=result.info.get("figures", {}))
        elif check == "verdict":
            entry.update(check="verdict", verdict=result.info.get("verdict", ""))
        entries.setdefault(result.model, {})[result.stage] = entry
    return entries


def read_lock(path: Path) -> Lock:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(f"--locked: {path.name} not found; run `modelbuild build` once to write it, then commit it") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path.name}: not a valid lock file ({exc}); delete it and run `modelbuild build`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path.name}: cannot read the lock file: {exc}") from None
    for model, stages in data.items():
        if not isinstance(stages, dict):
            raise UserError(f"{path.name}: [{model}]: expected a table of stages, got {stages!r}; delete it and run `modelbuild build`")
        for stage, entry in stages.items():
            if not (
                isinstance(entry, dict)
                and all(isinstance(entry.get(k), str) and _DIGEST.match(entry[k]) for k in ("key", "output"))
                and entry.get("check", "bytes") in ("bytes", "tolerance", "verdict")
                and _figures_valid(entry.get("figures", {}))
            ):
                raise UserError(
                    f'{path.name}: [{model}] {stage}: expected {{ key = "<64 hex digits>", output = "<64 hex digits>" }}, '
                    f"got {_short(entry)}; delete the file and run `modelbuild build` to write it again"
                )
    return data


def write_lock(path: Path, report: BuildReport, previous: Lock, partial: bool = False) -> None:
    """Merge this build's records into the lock: models not built this time keep theirs, and
    with ``partial`` (``--target``) so do the stages of a built model that this build left out,
    so that a later ``build --locked`` of everything still passes. An entry checked by
    tolerance or verdict that this build reproduced is kept as it was: a build on another CPU
    leaves a committed lock clean."""
    entries = dict(previous)
    skipped = {(r.model, r.stage) for r in report.results if r.status == Status.SKIPPED}
    for model, stages in locked_stages(report).items():
        kept = {stage: previous[model][stage] if _equivalent(previous.get(model, {}).get(stage), entry) else entry for stage, entry in stages.items()}
        # A stage this machine cannot run (Core ML prediction off macOS) keeps the entry a
        # machine that can run it wrote.
        unrun = {stage: entry for stage, entry in previous.get(model, {}).items() if (model, stage) in skipped}
        entries[model] = {**previous.get(model, {}), **kept} if partial else {**unrun, **kept}
    lines = [HEADER]
    for model in sorted(entries):
        lines.append(f"\n[{_quote(model)}]\n")
        for stage in sorted(entries[model]):
            lines.append(f"{_quote(stage)} = {_inline(entries[model][stage])}\n")
    text = "".join(lines)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return  # unchanged: leave the file (and its mtime) alone
    replace_file(path, text)


@dataclass
class LockCheck:
    problems: list[str] = field(default_factory=list)  # each fails --locked
    by_tolerance: list[str] = field(default_factory=list)  # passed, but not byte for byte: said, so nobody is misled


def check_lock(report: BuildReport, lock: Lock) -> LockCheck:
    """Every difference between this build and the lock, as a sentence naming model and stage."""
    outcome = LockCheck()
    for model, stages in locked_stages(report).items():
        for stage, entry in stages.items():
            recorded = lock.get(model, {}).get(stage)
            if recorded is None:
                outcome.problems.append(f"{model}: {stage} is not in modelbuild.lock (run `modelbuild build` to update it)")
            elif recorded["key"] != entry["key"]:
                outcome.problems.append(
                    f"{model}: {stage}: its inputs changed since modelbuild.lock was written "
                    f"(key {entry['key'][:16]}…, lock has {recorded['key'][:16]}…); run `modelbuild build` to update it"
                )
            elif recorded["output"] == entry["output"]:
                continue
            elif entry.get("check") == "tolerance":
                difference = _figures_differ(recorded.get("figures", {}), entry["figures"])
                if difference:
                    outcome.problems.append(
                        f"{model}: {stage}: its float results differ from modelbuild.lock beyond the tolerance (rtol {RTOL:g}, atol {ATOL:g}): {difference}"
                    )
                else:
                    outcome.by_tolerance.append(f"{model}: {stage}")
            elif entry.get("check") == "verdict":
                if recorded.get("verdict") != entry["verdict"]:
                    outcome.problems.append(f"{model}: {stage}: verdict {entry['verdict']!r}, modelbuild.lock has {recorded.get('verdict')!r}")
                else:
                    outcome.by_tolerance.append(f"{model}: {stage}")
            else:
                outcome.problems.append(
                    f"{model}: {stage} is not reproducible: this build produced {entry['output']}, modelbuild.lock has {recorded['output']}"
                )
    return outcome


def _figures_valid(figures: Any) -> bool:
    return isinstance(figures, dict) and all(
        isinstance(values, list) and len(values) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        for values in figures.values()
    )


def _equivalent(recorded: dict[str, Any] | None, entry: dict[str, Any]) -> bool:
    if recorded is None or recorded.get("key") != entry["key"] or recorded.get("check", "bytes") != entry.get("check", "bytes"):
        return False
    if recorded.get("output") == entry["output"]:
        return recorded == entry
    if entry.get("check") == "tolerance":
        return not _figures_differ(recorded.get("figures", {}), entry["figures"])
    if entry.get("check") == "verdict":
        return recorded.get("verdict") == entry["verdict"]
    return False


def _figures_differ(recorded: dict[str, Any], figures: dict[str, Any]) -> str | None:
    if set(recorded) != set(figures):
        return f"outputs {sorted(figures)}, lock has {sorted(recorded)}"
    for name in sorted(figures):
        for label, a, b in zip(("mean", "max abs"), figures[name], recorded[name]):
            if not (math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL) or (math.isnan(a) and math.isnan(b))):
                return f"{name} {label} {a:.6g}, lock has {b:.6g}"
    return None


def _inline(entry: dict[str, Any]) -> str:
    """One TOML inline table, keys in a fixed order (byte-stable output)."""
    parts = [f'key = "{entry["key"]}"', f'output = "{entry["output"]}"']
    if "check" in entry:
        parts.append(f'check = "{entry["check"]}"')
    if "verdict" in entry:
        parts.append(f"verdict = {json.dumps(entry['verdict'])}")
    if "figures" in entry:
        figures = ", ".join(f"{json.dumps(name)} = [{', '.join(_toml_float(v) for v in values)}]" for name, values in sorted(entry["figures"].items()))
        parts.append(f"figures = {{ {figures} }}")
    return "{ " + ", ".join(parts) + " }"


def _toml_float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(float(value))
    return text if any(c in text for c in ".en") else text + ".0"


def _quote(name: str) -> str:
    return f'"{name}"'


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_if_present(path: Path) -> tuple[Lock, str | None]:
    """The lock, or {} with the reason when it is missing or malformed (a build writes it anew)."""
    if not path.exists():
        return {}, None
    try:
        return read_lock(path), None
    except UserError as exc:
        return {}, str(exc)


__all__ = ["LockCheck", "check_lock", "load_if_present", "read_lock", "write_lock"]
