"""Find manifest files, parse them, merge defaults, validate everything, report all at once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Protocol

from modelbuild.errors import Location, ManifestError, problem
from modelbuild.manifest.defaults import apply_defaults, deep_merge
from modelbuild.manifest.parse import parse_file
from modelbuild.manifest.schema import model_errors
from modelbuild.manifest.schema import schema_digest as SCHEMA_DIGEST
from modelbuild.manifest.semantics import check_model
from modelbuild.manifest.spec import ModelSpec
from modelbuild.store.hashing import digest_json

SUFFIXES = (".yaml", ".yml", ".toml")


class ValidationMemo(Protocol):
    """Digests of model data already found schema-valid: jsonschema is the slowest import of
    a no-op build, and an unchanged manifest needs no second opinion."""

    def is_valid(self, digest: str) -> bool: ...

    def mark_valid(self, digest: str) -> None: ...


def find_manifest_files(paths: Iterable[Path]) -> list[Path]:
    """Every manifest under the given files or folders, recursively, sorted."""
    found: list[Path] = []
    problems = []
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
                found.extend(Path(root) / f for f in sorted(files) if f.endswith(SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            problems.append(problem(Location(str(path)), "no such file or folder"))
    if problems:
        raise ManifestError(problems)
    return sorted({p.resolve() for p in found})


def display_path(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def load_models(files: list[Path], root: Path, defaults: dict[str, Any] | None = None, memo: ValidationMemo | None = None) -> list[ModelSpec]:
    """Load and validate every model of ``files``; raise one ManifestError listing every problem."""
    problems: list[str] = []
    models: list[ModelSpec] = []
    for path in files:
        display = display_path(path, root)
        try:
            data, lines = parse_file(path, display)
        except ManifestError as exc:
            problems.extend(exc.problems)
            continue
        for prefix, raw in _split_models(data, display, lines, problems):
            merged = deep_merge(defaults or {}, raw) if isinstance(raw, dict) else raw
            spec = ModelSpec(
                name=str(merged.get("name", "?")) if isinstance(merged, dict) else "?",
                data=merged,
                manifest=path,
                display=display,
                prefix=prefix,
                lines=lines,
                root=root,
            )
            digest = digest_json({"schema": SCHEMA_DIGEST(), "data": merged}) if memo is not None else ""
            if memo is None or not memo.is_valid(digest):
                schema_problems = [problem(spec.where(field), message) for field, message in model_errors(merged)]
                if schema_problems:
                    problems.extend(schema_problems)
                    continue
                if memo is not None:
                    memo.mark_valid(digest)
            for name, data in expand_variants(merged):
                overlay = f"variants.{data['variant']}" if "variant" in data else ""
                resolved = ModelSpec(name, apply_defaults(data), path, display, prefix, lines, root, overlay)
                model_problems = check_model(resolved)
                problems.extend(model_problems)
                if not model_problems:
                    models.append(resolved)
    duplicates = _duplicate_names(models)
    problems.extend(duplicates)
    if problems:
        unique = list({m.name: m for m in reversed(models)}.values())[::-1]
        raise ManifestError(problems, valid=unique)
    return models


def expand_variants(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The model, then one model per variant: ``<name>-<variant>`` with the variant's fields
    merged in and only the targets it names. A variant is a model of its own to the graph, so
    the stages it shares with its base (source, capture, a Core ML conversion before
    ``optimize``) have the same keys and are built once."""
    base = {k: v for k, v in data.items() if k != "variants"}
    expanded = [(str(base["name"]), base)]
    for variant, over in sorted((data.get("variants") or {}).items()):
        targets = {t: deep_merge((base.get("targets") or {}).get(t) or {}, options or {}) for t, options in over["targets"].items()}
        fields = {k: v for k, v in over.items() if k not in ("targets", "description")}
        merged = deep_merge({k: v for k, v in base.items() if k != "targets"}, fields)
        merged.update(name=f"{base['name']}-{variant}", targets=targets, variant_of=str(base["name"]), variant=variant)
        expanded.append((merged["name"], merged))
    return expanded


def _split_models(data: Any, display: str, lines: dict[str, int], problems: list[str]) -> list[tuple[str, Any]]:
    if isinstance(data, dict) and "models" in data:
        extra = sorted(set(data) - {"models"})
        if extra:
            problems.append(
                problem(Location(display, lines.get(f"{extra[0]}#key"), extra[0]), "unknown field next to 'models:'; a file holds one model or a models: list")
            )
        items = data["models"]
        if not isinstance(items, list) or not items:
            problems.append(problem(Location(display, lines.get("models"), "models"), f"expected a non-empty list of models, got {items!r}"))
            return []
        return [(f"models[{i}]", item) for i, item in enumerate(items)]
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"{type(data).__name__}"
        problems.append(
            problem(Location(display, 1 if data is not None else None), f"expected a model (a table with name, source, inputs) or a models: list, got {found}")
        )
        return []
    return [("", data)]


# Files modelbuild writes in out_dir beside the model folders: a model of that name would
# have its folder collide with them.
RESERVED_NAMES = ("report.json", "bench.md", "logs")


def _duplicate_names(models: list[ModelSpec]) -> list[str]:
    seen: dict[str, ModelSpec] = {}
    problems = []
    for model in models:
        if model.name in RESERVED_NAMES:
            problems.append(
                problem(
                    model.where("name"),
                    f"expected a name other than {', '.join(RESERVED_NAMES)} (modelbuild writes {model.name!r} in out_dir), got {model.name!r}",
                )
            )
            continue
        if model.name in seen:
            first = seen[model.name].where("name")
            used = f"{first.file}" + (f":{first.line}" if first.line else "")
            problems.append(problem(model.where("name"), f"model name {model.name!r} is already used by {used}; names must be unique across the build"))
        else:
            seen[model.name] = model
    return problems
