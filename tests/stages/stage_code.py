"""What each stage's output can depend on in modelbuild's own code, as a digest, so that a
change to that code cannot slip into a release without its stage's ``version`` changing too.

Why: a stage's key names its inputs, its fields, its tools' versions and its ``version``, but
not modelbuild's source. A change to what a stage writes that forgets the bump leaves every
cache (local and remote) serving the old bytes under the new code: a wrong artifact built
without a word. It happened twice (caught late, by regenerating the lock). The digest covers
the stage's module and every modelbuild module it imports, statically and transitively
(imports inside functions included), and for verify/bench stages their runtime's module.
Comments, formatting and docstrings do not count: the digest is of the code as ``ast.unparse``
writes it back, docstrings left out.

    python -m tests.stages.stage_code            # what changed since the record
    python -m tests.stages.stage_code --update   # record the current code (after bumping)

``--update`` refuses to record new code under an unchanged ``version`` unless told
``--same-output STAGE`` (a refactor that cannot change any byte the stage writes): the choice
is made by a person, once, in the diff.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import hashlib
import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[2] / "modelbuild"
RECORD = Path(__file__).resolve().parent / "stage_code.json"


def stage_names() -> list[str]:
    """Every stage a build can run, the derived verify/bench stages included."""
    from modelbuild.graph.keys import toolchain_stage_names

    return toolchain_stage_names()


def module_file(name: str) -> Path | None:
    """The file of a modelbuild module, or None for anything else."""
    if name != "modelbuild" and not name.startswith("modelbuild."):
        return None
    parts = name.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


@lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _import_nodes(tree: ast.AST, in_functions: bool) -> list[ast.stmt]:
    """Import statements of a module: all of them, or only those that run when it is imported
    (not inside a function body)."""
    if in_functions:
        return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    found: list[ast.stmt] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return found


# Registries whose BUILTIN modules are not followed: each stage is a root of its own, and a
# verify/bench stage names its runtime (see stage_roots).
SEPARATE_REGISTRIES = {"modelbuild.stages", "modelbuild.runtimes"}


def _registered(path: Path) -> set[str]:
    """The modules a registry package loads by name (its ``BUILTIN`` list): the compat
    conversions, the targets. They shape what a stage writes as much as an import does."""
    if path.is_relative_to(PACKAGE) and module_name(path) in SEPARATE_REGISTRIES:
        return set()
    found: set[str] = set()
    for node in _tree(path).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "BUILTIN" for t in node.targets):
            found |= {item.value for item in ast.walk(node.value) if isinstance(item, ast.Constant) and isinstance(item.value, str)}
    return found


def imported(path: Path, in_functions: bool = True) -> tuple[set[str], set[str]]:
    """The modelbuild modules a file imports, and apart from them the parent packages Python
    runs first. ``from a import b`` counts ``a.b`` when b is a module, else ``a``."""
    names: set[str] = set()
    for node in _import_nodes(_tree(path), in_functions):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                names.add(sub if module_file(sub) else node.module)
    names |= _registered(path)
    direct = {name for name in names if module_file(name)}
    parents = {".".join(name.split(".")[:i]) for name in direct for i in range(1, name.count(".") + 1)}
    return direct, parents - direct


def closure(roots: set[str]) -> list[str]:
    """The roots and every modelbuild module they import, transitively, sorted.

    A package (an ``__init__``, whether imported or only the parent of an imported module)
    counts with what it imports when it runs, not with the imports inside its functions: the
    packages here are registries, ``modelbuild.stages`` derives verify stages lazily, and every
    stage would otherwise depend on every runtime.
    """
    whole: set[str] = set()
    parent_only: set[str] = set()
    todo = [(name, True) for name in roots]
    while todo:
        name, full = todo.pop()
        path = module_file(name)
        if path is None or name in whole or (not full and name in parent_only):
            continue
        full = full and path.name != "__init__.py"
        (whole if full else parent_only).add(name)
        direct, parents = imported(path, in_functions=full)
        todo += [(m, True) for m in direct] + [(m, False) for m in parents]
    return sorted(whole | parent_only)


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_digest(path: Path) -> str:
    tree = _without_docstrings(ast.parse(path.read_text(encoding="utf-8")))
    # unparse, not dump: the source it gives back is the same across Python versions, where
    # dump's node fields are not (3.12 added type_params).
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()


def stage_roots(name: str) -> set[str]:
    """The modules that define a stage: its class's module and, for a verify or bench stage,
    the module of the runtime it drives."""
    from modelbuild.runtimes import RUNTIMES
    from modelbuild.stages import STAGES
    from modelbuild.targets import TARGETS

    stage = STAGES.get(name)
    roots = {stage.__module__}
    target = getattr(stage, "target", None)
    if name.endswith((".verify", ".bench")) and target:
        roots.add("modelbuild.runtimes.torch_eager")  # the bench's eager side
        if target != "torch":
            roots |= {TARGETS.get(target).__module__, RUNTIMES.get(TARGETS.get(target).runtime).__module__}
    return roots


def current() -> dict[str, Any]:
    """Each stage's version, the modules it depends on, and each module's digest."""
    from modelbuild.stages import STAGES

    names = stage_names()
    depends = {name: closure(stage_roots(name)) for name in names}
    modules = {m: code_digest(module_file(m)) for m in sorted({m for ms in depends.values() for m in ms})}  # type: ignore[arg-type]
    return {
        "modules": modules,
        "stages": {name: {"version": STAGES.get(name).version, "modules": depends[name]} for name in names},
    }


def recorded() -> dict[str, Any]:
    return json.loads(RECORD.read_text()) if RECORD.exists() else {"modules": {}, "stages": {}}


def _changed(name: str, now: dict[str, Any], then: dict[str, Any]) -> list[str]:
    """The modules of a stage whose code differs from the record (or that it gained or lost)."""
    before, after = set(then["stages"][name]["modules"]), set(now["stages"][name]["modules"])
    return sorted(m for m in before | after if m not in before or m not in after or then["modules"].get(m) != now["modules"][m])


def problems(now: dict[str, Any], then: dict[str, Any]) -> list[str]:
    """What a person must decide: stages whose code changed under the same version (a bump is
    missing, or the change cannot alter the output), and records that are out of date."""
    found = []
    for name in sorted(set(now["stages"]) | set(then["stages"])):
        if name not in then["stages"]:
            found.append(f"{name}: not recorded yet")
        elif name not in now["stages"]:
            found.append(f"{name}: recorded but no longer a stage")
        else:
            changed, version, was = _changed(name, now, then), now["stages"][name]["version"], then["stages"][name]["version"]
            if changed and version == was:
                found.append(f"{name}: code it depends on changed ({', '.join(changed)}) but its version is still {version}")
            elif version != was:
                found.append(f"{name}: version {was} → {version} not recorded yet")
    return found


def update(same_output: list[str]) -> list[str]:
    """Write the record; refuse (and name) the stages whose code changed under the same version
    unless ``same_output`` matches them (names or fnmatch patterns)."""
    now, then = current(), recorded()
    refused = [
        name
        for name in now["stages"]
        if name in then["stages"]
        and then["stages"][name]["version"] == now["stages"][name]["version"]
        and _changed(name, now, then)
        and not any(fnmatch.fnmatchcase(name, pattern) for pattern in same_output)
    ]
    if not refused:
        RECORD.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    return refused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="record the current code of every stage")
    parser.add_argument(
        "--same-output", action="append", default=[], metavar="STAGE", help="a stage (or fnmatch pattern) whose code changed but whose output cannot"
    )
    args = parser.parse_args()
    if args.update:
        refused = update(args.same_output)
        for name in refused:
            print(f"{name}: its code changed under the same version; bump {name}'s version, or pass --same-output {name}", file=sys.stderr)
        return 1 if refused else 0
    found = problems(current(), recorded())
    print("\n".join(found) if found else "every stage's code matches its record")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
