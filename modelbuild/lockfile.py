"""``modelbuild.lock``: every model's stage keys and output digests, meant to be committed.

Like Cargo.lock, it is rewritten by each build, and ``build --locked`` turns it into a
check: a stage whose key is unchanged must produce the bytes the lock records, so CI can
prove that a rebuild (``--locked --force``, or from an empty cache) is reproducible.
Benchmarks are left out: timings are measurements, not build outputs.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from modelbuild.errors import UserError
from modelbuild.report import BuildReport

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HEADER = ("# modelbuild.lock: each stage's key (a digest of everything it reads) and output digest.\n"
          "# Written by `modelbuild build`; commit it. `modelbuild build --locked` fails when a stage\n"
          "# with the same key produces other bytes, or when a key no longer matches this file.\n")

Lock = dict[str, dict[str, dict[str, str]]]
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def locked_stages(report: BuildReport) -> Lock:
    entries: Lock = {}
    for result in report.results:
        if result.stage.endswith(".bench") or result.status not in ("built", "cached") or not result.key:
            continue
        entries.setdefault(result.model, {})[result.stage] = {"key": result.key, "output": result.output or ""}
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
            if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str) and _DIGEST.match(entry[k]) for k in ("key", "output"))):
                raise UserError(f"{path.name}: [{model}] {stage}: expected {{ key = \"<64 hex digits>\", output = \"<64 hex digits>\" }}, "
                                f"got {entry!r}; delete the file and run `modelbuild build` to write it again")
    return data


def write_lock(path: Path, report: BuildReport, previous: Lock, partial: bool = False) -> None:
    """Merge this build's records into the lock: models not built this time keep theirs, and
    with ``partial`` (``--target``) so do the stages of a built model that this build left out,
    so that a later ``build --locked`` of everything still passes."""
    entries = dict(previous)
    for model, stages in locked_stages(report).items():
        entries[model] = {**previous.get(model, {}), **stages} if partial else stages
    lines = [HEADER]
    for model in sorted(entries):
        lines.append(f"\n[{_quote(model)}]\n")
        for stage in sorted(entries[model]):
            entry = entries[model][stage]
            lines.append(f"{_quote(stage)} = {{ key = \"{entry['key']}\", output = \"{entry['output']}\" }}\n")
    text = "".join(lines)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return  # unchanged: leave the file (and its mtime) alone
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def check_lock(report: BuildReport, lock: Lock) -> list[str]:
    """Every difference between this build and the lock, as a sentence naming model and stage."""
    problems = []
    for model, stages in locked_stages(report).items():
        for stage, entry in stages.items():
            recorded = lock.get(model, {}).get(stage)
            if recorded is None:
                problems.append(f"{model}: {stage} is not in modelbuild.lock (run `modelbuild build` to update it)")
            elif recorded["key"] != entry["key"]:
                problems.append(f"{model}: {stage}: its inputs changed since modelbuild.lock was written "
                                f"(key {entry['key'][:16]}…, lock has {recorded['key'][:16]}…); run `modelbuild build` to update it")
            elif recorded["output"] != entry["output"]:
                problems.append(f"{model}: {stage} is not reproducible: this build produced {entry['output']}, "
                                f"modelbuild.lock has {recorded['output']}")
    return problems


def _quote(name: str) -> str:
    return f'"{name}"'


def load_if_present(path: Path) -> tuple[Lock, str | None]:
    """The lock, or {} with the reason when it is missing or malformed (a build writes it anew)."""
    if not path.exists():
        return {}, None
    try:
        return read_lock(path), None
    except UserError as exc:
        return {}, str(exc)


__all__ = ["check_lock", "load_if_present", "read_lock", "write_lock"]
