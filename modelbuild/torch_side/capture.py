"""Capturing a prepared module: trace, script (with traced submodules) or torch.export."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Callable

from modelbuild.errors import Location, StageFailure, UserError
from modelbuild.manifest.shapes import dims, shape_at
from modelbuild.torch_side.eager import flatten


def fresh_type_names() -> None:
    """Forget the TorchScript class types earlier captures in this worker process created.

    TorchScript renames a class whose name is taken (``___torch_mangle_<n>``), so without
    this the second model a worker captures gets other names, and other bytes, than the
    same model captured first. (The counter in the names still grows; the saved file is
    renumbered by :func:`renumber_mangled_names`.)
    """
    import torch

    torch._C._jit_clear_class_registry()
    torch.jit._recursive.concrete_type_store = torch.jit._recursive.ConcreteTypeStore()
    torch.jit._state._clear_class_state()


def trace(module: Any, example: list[Any], fresh: bool = True) -> tuple[Any, list[str]]:
    """torch.jit.trace, with its TracerWarnings collected for the summary instead of the terminal.
    ``fresh=False`` keeps the class types already registered (the traced submodules of a
    script capture live on in the module about to be scripted)."""
    import torch

    if fresh:
        fresh_type_names()
    found: set[str] = set()

    def record(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if issubclass(category, torch.jit.TracerWarning):
            # Where the user's code made the call: torch and libraries such as transformers
            # raise these warnings from their own lines, which say nothing to the user.
            filename, lineno = _user_frame(filename, lineno)
            found.add(f"{_display(filename)}:{lineno}: {str(message).splitlines()[0]}")

    with warnings.catch_warnings():
        warnings.simplefilter("always", torch.jit.TracerWarning)
        warnings.showwarning = record
        # _store_inputs=False: the example tensors would otherwise ship inside the artifact.
        traced = torch.jit.trace(module, tuple(example), check_trace=False, strict=False, _store_inputs=False)
    return traced, sorted(found)


def _user_frame(filename: str, lineno: int) -> tuple[str, int]:
    """The innermost frame of the current stack in the user's own code: not the standard
    library, an installed package (torch, transformers, ...) or modelbuild itself."""
    import sysconfig
    import traceback

    libraries = tuple(str(Path(p).resolve()) for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    ours = str(Path(__file__).resolve().parents[1])
    for frame in reversed(traceback.extract_stack()):
        path = frame.filename
        if path.startswith("<") or "site-packages" in path or "dist-packages" in path:
            continue
        resolved = str(Path(path).resolve())
        if resolved.startswith(libraries) or resolved.startswith(ours):
            continue
        return path, frame.lineno or lineno
    return filename, lineno


_SNAPSHOT = re.compile(r"[/\\]objects[/\\][0-9a-f]{2}[/\\][0-9a-f]{64}[/\\]tree[/\\](.+)$")


def _display(filename: str) -> str:
    """The warning's file as the user knows it: the model's code runs from the source snapshot
    (``objects/…/tree/<project-relative path>``), so that path is shown as the project's."""
    snapshot = _SNAPSHOT.search(filename)
    if snapshot:
        return snapshot.group(1).replace("\\", "/")
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        for marker in ("site-packages", "dist-packages"):
            if marker in path.parts:
                # An installed library's line (transformers' masking code): its import path reads best.
                return "/".join(path.parts[path.parts.index(marker) + 1 :])
        return path.name


def script(
    model: Any,
    prepared: Any,
    example: list[Any],
    submodules: list[str],
    where: Callable[[str], Location],
    before_script: Callable[[Any], list[str]] = lambda module: [],
) -> tuple[Any, list[str]]:
    """Script the model after tracing the named submodules with the inputs they see in one pass.
    ``before_script`` changes the module just before scripting (targets' compatibility fixes)."""
    import torch

    notes: list[str] = []
    seen: dict[str, tuple[Any, ...]] = {}
    handles = []
    fresh_type_names()  # once, first: clearing later would free the traced submodules' types (a crash in torch.jit.script)
    for index, name in enumerate(submodules):
        try:
            sub = model.get_submodule(name)
        except AttributeError:
            raise UserError(f"{where(f'capture.trace_submodules[{index}]')}: the model has no submodule {name!r}") from None
        handles.append(sub.register_forward_pre_hook(lambda _m, args, _n=name: seen.setdefault(_n, tuple(args))))
    with torch.no_grad():
        prepared(*example)
    for handle in handles:
        handle.remove()
    for index, name in enumerate(submodules):
        if name not in seen:
            raise UserError(f"{where(f'capture.trace_submodules[{index}]')}: submodule {name!r} is not called in a forward pass of the example inputs")
        traced, messages = trace(model.get_submodule(name), list(seen[name]), fresh=False)
        notes += [f"{name}: {m}" for m in messages]
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, traced)
    notes += before_script(model)
    try:
        scripted = torch.jit.script(model)
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0]
        raise UserError(
            f"{where('capture.mode')}: torch.jit.script failed: {first}; trace the offending submodule with capture.trace_submodules, or use mode 'trace'"
        ) from exc
    # Frozen in eval mode: parameters become constants and the training-only branches go
    # (BatchNorm's ``if self.training``, dropout). coremltools cannot convert those branches
    # ("cond ... expects bool ... got str"), and an inference artifact never takes them.
    try:
        scripted = torch.jit.freeze(scripted.eval())
    except Exception as exc:  # noqa: BLE001 - a module freezing cannot handle still ships, unfrozen
        notes.append(f"script: torch.jit.freeze failed ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); kept unfrozen")
    if prepared.selectors is None and not any(prepared.scaled):
        return scripted, notes
    # Output selection and normalisation folding live in the Prepared wrapper; tracing it keeps
    # the scripted model inside intact (control flow included).
    prepared.model = scripted
    traced, messages = trace(prepared, example, fresh=False)  # the scripted model inside keeps its types
    return traced, notes + messages


def dynamic_shapes(inputs: list[dict[str, Any]], unbounded_max: int | None = None) -> tuple[Any, ...]:
    """torch.export dynamic dims from the manifest's flexible dimensions.

    ``unbounded_max`` bounds dimensions that have no max, for runtimes that plan memory
    for the largest shape (ExecuTorch).
    """
    from torch.export import Dim

    spec = []
    shared: dict[str, Any] = {}  # one torch Dim per symbol: inputs that name a dimension share it
    for inp in inputs:
        axes = {}
        for axis, d in enumerate(dims(inp)):
            if d.flexible:
                name = d.symbol(inp, axis)
                if name not in shared:
                    # torch.export specialises sizes 0 and 1; a range starting at 1 starts at 2 there.
                    low = max(d.min, 2)
                    high = d.max if d.max is not None else unbounded_max
                    if high is not None and high <= low:
                        raise StageFailure(_unkeepable(inp["name"], axis, d.min, d.max, high))
                    shared[name] = Dim(name, min=low, max=high) if high is not None else Dim(name, min=low)
                axes[axis] = shared[name]
        spec.append(axes or None)
    return tuple(spec)


def export_sample(example: list[Any], inputs: list[dict[str, Any]]) -> list[Any]:
    """The example torch.export traces with. torch.export specialises a size of 1, so a
    flexible dimension whose default is 1 (a flexible batch) would violate its own range
    ("Constraints violated"): such a dimension is sampled at 2 instead (its min if larger),
    repeating the values along it so token ids and pixels stay valid."""
    sample = []
    for tensor, inp in zip(example, inputs):
        for axis, d in enumerate(dims(inp)):
            wanted = max(2, d.min)
            if d.flexible and tensor.shape[axis] == 1 and (d.max is None or wanted <= d.max):
                repeats = [1] * tensor.dim()
                repeats[axis] = wanted
                tensor = tensor.repeat(repeats)
        sample.append(tensor)
    return sample


def export(prepared: Any, example: list[Any], inputs: list[dict[str, Any]], where: Callable[[str], Location]) -> Any:
    import torch

    try:
        # Prepared.forward takes *inputs: its dynamic shapes are keyed by that parameter's name.
        sample = export_sample(example, inputs)
        return torch.export.export(prepared, tuple(sample), dynamic_shapes={"inputs": dynamic_shapes(inputs)}, strict=False)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{where('capture.mode')}: torch.export failed: {export_failure(exc, inputs)}; see the log, or use mode 'trace'") from exc


def has_recurrent_layers(model: Any) -> bool:
    import torch

    return any(isinstance(m, torch.nn.RNNBase) for m in model.modules())


def check_against_eager(captured: Any, prepared: Any, inputs: list[dict[str, Any]]) -> str | None:
    """Run both on a second seeded sample (at the min shape when it differs) and compare.

    A trace bakes in every Python-side value; a second sample of another size is what shows it.
    """
    import torch

    from modelbuild.torch_side.samples import make_inputs

    which = "min" if any(shape_at(i, "min") != shape_at(i, "default") for i in inputs) else "default"
    sample = make_inputs(inputs, which, seed=1)
    with torch.no_grad():
        try:
            # Each gets its own copy: a model that writes into its input (x.mul_(2)) would hand the
            # capture the doubled sample, and the check blamed the capture for the difference.
            expected = prepared(*_copies(sample))
            got = captured(*_copies(sample))
        except Exception as exc:  # noqa: BLE001
            return f"the captured module fails on a second sample at the {which} shape: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    expected_list = flatten(expected)
    got_list = flatten(got)
    for index, (e, g) in enumerate(zip(expected_list, got_list)):
        if e.shape != g.shape:
            return f"at the {which} shape, output {index} has shape {tuple(g.shape)}, eager gives {tuple(e.shape)}"
        if e.is_floating_point() and not torch.allclose(e, g, rtol=1e-4, atol=1e-5):
            delta = (e - g).abs().max().item()
            return f"at the {which} shape, output {index} differs from eager by up to {delta:.3g}: the capture baked in an input-dependent value"
    return None


def _unkeepable(name: str, axis: int, low: int, high: int | None, bound: int) -> str:
    where = f"input {name!r}, dimension {axis}"
    if high is None:
        return f"{where}: its min {low} is above the {bound} that targets.executorch.unbounded_max plans for; raise unbounded_max or give the dimension a max"
    return (
        f"{where}: torch.export cannot keep {low}..{high} flexible (it treats a size of 1 as fixed, so its ranges "
        "start at 2 and must hold two sizes); give it a max of 3 or more"
    )


def _copies(sample: list[Any]) -> list[Any]:
    return [t.clone() if hasattr(t, "clone") else t for t in sample]


def save_torchscript(module: Any, path: Path) -> None:
    """Save a TorchScript module so the bytes depend on the module only.

    ``torch.jit.save`` also writes ``*.debug_pkl`` records holding the absolute paths of the
    source files the module was traced from, so the same model built in two checkouts would
    differ (and ship the build machine's paths). The archive is rewritten through torch's
    own zip writer without them; loading needs none (only error messages lose source lines).
    The archive's inner folder is named after the file, so every capture uses one name.
    """
    import torch

    raw = path.with_name(f".{path.name}.raw")
    torch.jit.save(module, str(raw))
    try:
        reader = torch._C.PyTorchFileReader(str(raw))
        # serialization_id is derived from the records; the writer computes it anew.
        records = {
            name: bytes(reader.get_record(name))
            for name in reader.get_all_records()
            if not name.endswith(".debug_pkl") and not name.endswith("serialization_id")
        }
        del reader
        records = renumber_mangled_names(records)
        writer = torch._C.PyTorchFileWriter(str(path))
        for name in sorted(records):
            writer.write_record(name, records[name], len(records[name]))
        writer.write_end_of_file()
    finally:
        raw.unlink(missing_ok=True)


_MANGLED = re.compile(rb"___torch_mangle_(\d+)")


def renumber_mangled_names(records: dict[str, bytes]) -> dict[str, bytes]:
    """TorchScript numbers the class types it renames (``___torch_mangle_<n>``) with a counter
    global to the process, so the same module saved by a worker that traced something else
    first gets other numbers. Renumber them by first appearance in the module structure
    (data.pkl, then code in path order with the numbers left out) so the bytes depend on the
    module only. data.pkl names classes in GLOBAL opcodes (newline-terminated, no lengths)
    and code records are text, so a textual rewrite is exact."""
    order: dict[bytes, bytes] = {}

    def visit(blob: bytes) -> None:
        for match in _MANGLED.finditer(blob):
            order.setdefault(match.group(1), str(len(order)).encode())

    pickles = sorted(name for name in records if name.endswith("data.pkl"))
    rest = sorted((name for name in records if name not in pickles), key=lambda n: _MANGLED.sub(b"", n.encode()))
    for name in pickles + rest:
        visit(records[name])
    for name in rest:
        visit(name.encode())

    def rename(blob: bytes) -> bytes:
        return _MANGLED.sub(lambda m: b"___torch_mangle_" + order[m.group(1)], blob)

    return {rename(name.encode()).decode(): rename(data) if (name.endswith(".pkl") or name.endswith(".py")) else data for name, data in records.items()}


def _chain_text(exc: BaseException) -> str:
    """The text of an exception and of those it was raised from: exporters wrap torch.export's
    error, whose detail is what the user needs."""
    texts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


def data_dependent_flow(exc: BaseException) -> str | None:
    """The condition torch.export could not decide when it failed on control flow that depends
    on values the model computes (a generation loop's stop test), or None for other failures."""
    text = _chain_text(exc)
    guard = re.search(r"Could not guard on data-dependent expression ([^\n]+?)(?: \(unhinted|\n|$)", text)
    if guard:
        return guard.group(1).strip()
    return "" if ("GuardOnDataDependentSymNode" in text or "data-dependent" in text) else None


def data_dependent_message(condition: str, target: str) -> str:
    """Why a graph format cannot hold a loop whose length the model computes, and what to do."""
    detail = f" ({condition})" if condition else ""
    return (
        f"the model's forward has a loop or branch that depends on values it computes{detail}, as a generation loop does: "
        f"torch.export cannot capture it, so {target} cannot hold it. Build {target} from the single step instead "
        "(a manifest whose factory returns the step module), or leave the target out; Core ML (a while_loop) and "
        "TorchScript keep the loop"
    )


_INPUT_SIZE = re.compile(r"L\['inputs'\]\[(\d+)\]\.size\(\)\[(\d+)\]")


def export_failure(exc: BaseException, inputs: list[dict[str, Any]]) -> str:
    """torch.export's failure in the manifest's terms: the first line, then the lines that say
    which sizes must be equal and torch's "Suggested fixes", with tensor paths as input names
    (``L['inputs'][1].size()[1]`` reads ``attention_mask.shape[1]``). Sizes torch found equal
    are what a named dimension under ``dims:`` declares, so the message says so."""
    first = str(exc).strip().splitlines() or [type(exc).__name__]
    text = _chain_text(exc)
    lines = text.splitlines()

    def named(line: str) -> str:
        def one(match: re.Match[str]) -> str:
            index, axis = int(match.group(1)), match.group(2)
            return f"{inputs[index]['name']}.shape[{axis}]" if index < len(inputs) else match.group(0)

        return _INPUT_SIZE.sub(one, line.strip(" -"))

    equal = [named(line) for line in lines if "must always be equal" in line or "must be specialized" in line]
    fixes: list[str] = []
    if "Suggested fixes:" in text:
        for line in text.split("Suggested fixes:", 1)[1].splitlines()[1:]:
            if not line.strip() or not line.startswith(" "):
                break
            fixes.append(named(line))
    parts = [named(first[0])] + list(dict.fromkeys(equal))
    if fixes:
        parts.append("torch suggests: " + "; ".join(fixes))
    if any("must always be equal" in line for line in equal):
        parts.append(
            "inputs whose sizes must be equal share a named dimension: declare it under dims "
            "(e.g. dims: {seq: {min: 1, max: 128}}) and write its name in each input's shape"
        )
    return ". ".join(p.rstrip(".") for p in parts)
