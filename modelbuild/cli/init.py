"""``modelbuild init [FACTORY]``: write a commented starter manifest.

Without a factory it writes a template whose every section says what it is for (and never
imports torch). With one it imports and calls the factory the way a build does, reads
``forward``'s signature and the first layer for the inputs, calls the model on a sample of
those shapes to confirm them and to list its outputs. What it cannot find out it writes as a
placeholder with a ``# TODO:`` comment: a starter that guesses silently would only move the
mistake to the first build, where it is harder to see.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbuild.errors import Location, ManifestError, UserError, first_line
from modelbuild.store.paths import replace_file
from modelbuild.usercode.tree import isolated_imports

PLACEHOLDER_FACTORY = "models.model:build"
FACTORY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}
IMAGE_SIDE = 224
SEQ = {"min": 1, "max": 128, "default": 16}
# The parameters a transformers model's forward takes besides its main input that a tokenizer
# gives too: the one every exported text model needs.
MASK = "attention_mask"
HEADER_LINES = 4  # the schema line and the comment that explains TODO


@dataclass
class Entry:
    """One item of ``inputs:`` or ``outputs:``: its fields (value, comment) and the comment lines above it."""

    fields: list[tuple[str, Any, str]]
    lead: list[str] = field(default_factory=list)


@dataclass
class Draft:
    """What init found out about the model; rendered by ``render``."""

    name: str
    factory: str
    args: dict[str, Any]
    inputs: list[Entry]
    outputs: list[Entry]
    dims: dict[str, dict[str, int]] = field(default_factory=dict)
    dims_comment: str = ""
    source_notes: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


def run_init(factory: str | None, out: str | None, name: str | None, args_json: str | None, force: bool) -> list[str]:
    """Write the starter manifest; the lines to print. Raises UserError (exit 2) for a bad
    argument, an existing file without ``force``, or a factory that cannot be imported or called."""
    if factory is not None and not FACTORY_PATTERN.match(factory):
        raise UserError(f"init: expected FACTORY as 'module:callable' (e.g. models.mynet:build), got {factory!r}")
    if name is not None and not NAME_PATTERN.match(name):
        raise UserError(f"init: --name: expected lowercase letters, digits, '_', '.', '-' (starting with a letter or digit), got {name!r}")
    if args_json is not None and factory is None:
        raise UserError("init: --args needs a FACTORY (the placeholder factory takes no arguments)")
    args = _parse_args(args_json)
    model_name = name or (_slug(factory.partition(":")[0].split(".")[-1]) if factory else "model")
    path = Path(out) if out else Path("manifests") / f"{model_name}.yaml"
    path = path if path.is_absolute() else Path.cwd() / path
    if path.suffix not in (".yaml", ".yml"):
        raise UserError(f"init: --out: expected a .yaml or .yml file, got {out!r}")
    if path.exists() and not force:
        raise UserError(f"{_display(path)} exists; pass --force to replace it")
    from modelbuild.manifest.project import find_root

    root = find_root(Path.cwd().resolve())[0]
    folder = path.parent.resolve()
    if factory is None:
        draft = starter_draft(model_name, folder)
    else:
        draft = factory_draft(model_name, factory, args, [folder, root])
    text = render(draft, schema_reference(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, text)
    lines = [f"wrote {_display(path)}", *draft.summary]
    todos = sum("TODO" in line for line in text.splitlines()[HEADER_LINES:])
    if todos:
        lines.append(f"{todos} line(s) marked TODO to fill in: grep -n TODO {_display(path)}")
    lines += check_lines(path)
    return lines


def _parse_args(args_json: str | None) -> dict[str, Any]:
    if args_json is None:
        return {}
    try:
        args = json.loads(args_json)
    except json.JSONDecodeError as exc:
        raise UserError(f"init: --args: expected a JSON object like '{{\"num_classes\": 10}}', got {args_json!r} ({exc.msg})") from None
    if not isinstance(args, dict):
        raise UserError(f"init: --args: expected a JSON object (keyword arguments), got {type(args).__name__}")
    return args


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-._")
    return slug or "model"


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def schema_reference(manifest: Path) -> str:
    """The schema for editors: relative when the manifest sits in the checkout modelbuild is
    installed from (the link survives moving the checkout), absolute otherwise."""
    import modelbuild

    package = Path(modelbuild.__file__).resolve().parent
    schema = package / "schema" / "manifest.schema.json"
    target = manifest.resolve()
    if target.is_relative_to(package.parent):
        return Path(os.path.relpath(schema, target.parent)).as_posix()
    return str(schema)


def check_lines(path: Path) -> list[str]:
    """What ``modelbuild check`` says of the new file, so the user reads it before running it."""
    from modelbuild.manifest.load import load_models
    from modelbuild.manifest.project import load_project

    try:
        project = load_project()
        load_models([path.resolve()], project.root, project.defaults)
    except ManifestError as exc:
        return ["modelbuild check will say (until the TODOs are done):", *(f"  {p}" for p in exc.problems)]
    except UserError as exc:
        return [f"modelbuild check will say: {first_line(exc)}"]
    return [f"modelbuild check {_display(path)}: ok"]


def starter_draft(name: str, folder: Path) -> Draft:
    """The template without a factory: an RGB image in, one tensor out, every value a placeholder."""
    module = PLACEHOLDER_FACTORY.partition(":")[0]
    image = Entry(
        [
            ("name", "image", ""),
            ("kind", "image", "image (Core ML ImageType: pixels 0..255) or tensor"),
            ("shape", [1, 3, IMAGE_SIDE, IMAGE_SIDE], f"fixed; a flexible side is {{min: 64, max: 512, default: {IMAGE_SIDE}}}"),
            ("scale", 1 / 255, "pixel * scale + bias is what the model gets (here 0..1); or normalize: {mean: [...], std: [...]}"),
            ("description", "RGB photo", ""),
        ],
        lead=["TODO: one entry per forward() argument, in order (a placeholder: an RGB image)"],
    )
    output = Entry(
        [("name", "output", ""), ("description", "TODO: what the model returns", "")],
        lead=["TODO: one entry per returned tensor; `select: key` (or an index) picks one from a dict (or a tuple)"],
    )
    notes = [
        f"TODO: the module {module} must exist: create models/model.py (in {_display(folder)} or the project root)",
        "with `def build(**args) -> torch.nn.Module`. Until then `modelbuild check` says:",
        f"  source.factory: cannot find module {module!r} (looked in <this folder>, <project root> and the installed packages)",
        "`modelbuild init models.mynet:build` writes a manifest from your factory instead (inputs and outputs found by calling it).",
    ]
    return Draft(name, PLACEHOLDER_FACTORY, {}, [image], [output], source_notes=notes)


# --- from a factory --------------------------------------------------------------------------


def load_factory_model(factory: str, args: dict[str, Any]) -> Any:
    """Import and call the factory; the module in eval mode. Every failure is one line naming the factory."""
    import torch

    from modelbuild.torch_side.loading import import_object

    try:
        obj = import_object(factory, Location("init"))
    except UserError as exc:
        raise UserError(" ".join(str(exc).split())) from None
    if not callable(obj):
        raise UserError(f"init: factory {factory!r} is a {type(obj).__name__}, not a callable")
    try:
        model = obj(**args)
    except Exception as exc:  # noqa: BLE001 - the user's code: any failure is theirs to fix
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise UserError(f"init: factory {factory!r} raised {type(exc).__name__}: {first_line(exc)} (at {Path(frame.filename).name}:{frame.lineno})") from None
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"init: expected factory {factory!r} to return a torch.nn.Module, got {type(model).__name__}")
    return model.eval()


def factory_draft(name: str, factory: str, args: dict[str, Any], roots: list[Path]) -> Draft:
    """Inputs from forward's signature and the first layer, confirmed by calling the model;
    outputs from what that call returned. The user's code stays importable throughout (a
    forward may import lazily)."""
    with isolated_imports(roots, set_aside=factory.partition(":")[0].split(".")[0]):
        model = load_factory_model(factory, args)
        draft = Draft(name, factory, args, [], [])
        params, skipped, missed = forward_inputs(model)
        layer = first_layer(model)
        samples: list[Any] = []
        for index, param in enumerate(params):
            entry, sample = _input_entry(draft, model, param, layer if index == 0 else None, first=params[0] if index else None)
            draft.inputs.append(entry)
            samples.append(sample)
        if missed:
            lead = f"TODO: {', '.join(missed)} not declared: a build passes inputs by position and a parameter before it is left out; use a wrapper.class"
            (draft.inputs[0].lead if draft.inputs else draft.source_notes).append(lead)
        if skipped and draft.inputs:
            draft.inputs[0].lead.append(f"left out (optional, with defaults): {', '.join(skipped)}; inputs are passed by position, in forward's order")
        if not params:
            draft.inputs.append(
                Entry(
                    [("name", "input", ""), ("shape", [1], "TODO: the input's shape")],
                    lead=["TODO: forward() takes no named parameter modelbuild could read (only *args/**kwargs); declare the inputs in order"],
                )
            )
        _outputs(draft, model, samples)
    return draft


def forward_inputs(model: Any) -> tuple[list[str], list[str], list[str]]:
    """The forward parameters to declare: those without a default, plus attention_mask when
    there is one. A transformers model gives every parameter a default: its main input
    (``main_input_name``, else the first parameter) stands in for the required ones. Only a
    run of leading positional parameters can be declared, since a build passes inputs by
    position. Returns (declared, optional ones left out, wanted ones that cannot be declared)."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return [], [], []
    every = list(signature.parameters.values())
    positional = [p for p in every if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    names = [p.name for p in positional]
    wanted = [p.name for p in every if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not wanted and names:
        main = getattr(model, "main_input_name", None)
        wanted = [main if main in names else names[0]]
    if MASK in names and MASK not in wanted:
        wanted.append(MASK)
    chosen = []
    for param in names:
        if param not in wanted:
            break
        chosen.append(param)
    return chosen, [n for n in names if n not in wanted], [n for n in wanted if n not in chosen]


def first_layer(model: Any) -> Any:
    """The first module (in registration order) that holds parameters of its own, when it is
    a Conv1d, Conv2d, Linear or Embedding: what the first input's shape can be read from."""
    import torch

    for module in model.modules():
        if any(True for _ in module.parameters(recurse=False)):
            return module if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear, torch.nn.Embedding)) else None
    return None


def _max_positions(model: Any) -> int | None:
    config = getattr(model, "config", None)
    value = getattr(config, "max_position_embeddings", None)
    return value if isinstance(value, int) and 1 <= value <= 1048576 else None


def _input_entry(draft: Draft, model: Any, param: str, layer: Any, first: str | None) -> tuple[Entry, Any]:
    """One input's entry and the tensor it is probed with (None when its shape is unknown)."""
    import torch

    if param == MASK and first is not None and draft.dims:
        entry = Entry(
            [
                ("name", param, ""),
                ("kind", "tensor", ""),
                ("dtype", "int32", ""),
                ("shape", [1, "seq"], f"one length with {first} (dims.seq)"),
                ("values", "padding_mask", "samples: ones, then zeros, as a tokenizer pads"),
                ("description", "1 for tokens, 0 for padding", ""),
            ]
        )
        return entry, torch.ones(1, SEQ["default"], dtype=torch.int32)
    if isinstance(layer, torch.nn.Conv2d):
        channels = int(layer.in_channels)
        side = [1, channels, IMAGE_SIDE, IMAGE_SIDE]
        flexible = f"H and W fixed at {IMAGE_SIDE}; for other sizes write {{min: 64, max: 512, default: {IMAGE_SIDE}}} for each"
        if channels in (1, 3):
            layout = "RGB" if channels == 3 else "GRAYSCALE"
            entry = Entry(
                [
                    ("name", param, ""),
                    ("kind", "image", f"first layer {layer.__class__.__name__}(in_channels={channels})"),
                    ("shape", side, flexible),
                    ("color_layout", layout, ""),
                    ("scale", 1 / 255, "TODO: pixel * scale + bias is what the model gets (here 0..1); ImageNet-trained: normalize: {mean, std}"),
                    ("description", "RGB image" if channels == 3 else "grayscale image", ""),
                ]
            )
            return entry, torch.rand(*side)
        entry = Entry([("name", param, ""), ("kind", "tensor", f"first layer Conv2d(in_channels={channels})"), ("shape", side, flexible)])
        return entry, torch.randn(*side)
    if isinstance(layer, torch.nn.Conv1d):
        shape = [1, int(layer.in_channels), 128]
        entry = Entry(
            [
                ("name", param, ""),
                ("kind", "tensor", f"first layer Conv1d(in_channels={layer.in_channels})"),
                ("shape", shape, "TODO: the length (128 is a guess); a flexible one is {min: 1, max: 1024, default: 128}"),
            ]
        )
        return entry, torch.randn(*shape)
    if isinstance(layer, torch.nn.Linear):
        shape = [1, int(layer.in_features)]
        entry = Entry([("name", param, ""), ("kind", "tensor", ""), ("shape", shape, f"first layer Linear(in_features={layer.in_features})")])
        return entry, torch.randn(*shape)
    if isinstance(layer, torch.nn.Embedding):
        vocab = int(layer.num_embeddings)
        seq = dict(SEQ)
        positions = _max_positions(model)
        seq["max"] = positions or seq["max"]
        draft.dims = {"seq": seq}
        limit = "from config.max_position_embeddings" if positions else "128: TODO: the longest your model takes"
        draft.dims_comment = f"the sequence length every token input shares; max {limit}"
        entry = Entry(
            [
                ("name", param, ""),
                ("kind", "tensor", ""),
                ("dtype", "int32", ""),
                ("shape", [1, "seq"], "batch 1, seq tokens (dims.seq)"),
                ("range", [0, vocab], f"token ids: first layer Embedding(num_embeddings={vocab})"),
                ("description", "token ids", ""),
            ]
        )
        return entry, torch.randint(0, vocab, (1, SEQ["default"]), dtype=torch.int32)
    what = f"the first layer is {layer.__class__.__name__}" if layer is not None else "the first layer is not a Conv1d, Conv2d, Linear or Embedding"
    entry = Entry(
        [
            ("name", param, ""),
            ("kind", "tensor", "or image"),
            ("dtype", "float32", "TODO: the element type"),
            ("shape", [1], "TODO: the shape forward() expects"),
        ],
        lead=[f"TODO: modelbuild init could not tell {param}'s shape ({what if first is None else 'it is not the first input'})"],
    )
    return entry, None


def _outputs(draft: Draft, model: Any, samples: list[Any]) -> None:
    """Call the model on the samples (eval, no grad) and declare what it returns; a TODO
    placeholder when it cannot be called or returns something else."""
    import torch

    def placeholder(reason: str) -> None:
        draft.outputs.append(
            Entry([("name", "output", ""), ("description", "TODO: what the model returns", "")], lead=[f"TODO: {reason}; declare the outputs yourself"])
        )

    if not samples or any(s is None for s in samples):
        placeholder("the model was not called (an input's shape is unknown)")
        draft.summary.append("outputs: not found (the inputs are not all known); see the TODOs")
        return
    try:
        with torch.no_grad():
            result = model(*samples)
    except Exception as exc:  # noqa: BLE001 - the user's code on guessed shapes
        message = " ".join(first_line(exc).split())[:200]
        placeholder(f"calling the model on the inputs above failed: {type(exc).__name__}: {message}; fix the inputs")
        draft.summary.append(f"inputs: NOT confirmed: the model raised {type(exc).__name__}: {message}")
        return
    shapes = ", ".join(f"{e.fields[0][1]} {list(s.shape)}" for e, s in zip(draft.inputs, samples))
    draft.summary.append(f"inputs: {shapes} (confirmed by calling the model)")
    if isinstance(result, torch.Tensor):
        draft.outputs.append(Entry([("name", "output", f"returned {_tensor(result)}")]))
    elif isinstance(result, dict) or (isinstance(result, (tuple, list)) and result):
        items = list(result.items()) if isinstance(result, dict) else list(enumerate(result))
        for key, value in items:
            if not isinstance(value, torch.Tensor):
                todo = f"TODO: a {type(value).__name__}, not a tensor: select inside it (a.b.0) or drop it"
                draft.outputs.append(Entry([("name", _output_name(key), ""), ("select", key, todo)]))
                continue
            dotted = not isinstance(key, int) and "." in str(key)
            lead = [f"TODO: the key {key!r} has a dot, which select reads as a path; use a wrapper.class"] if dotted else []
            draft.outputs.append(Entry([("name", _output_name(key), ""), ("select", key, f"returned {_tensor(value)}")], lead=lead))
    else:
        placeholder(f"the model returned a {type(result).__name__}, not a tensor, tuple or dict")
    if draft.outputs and not draft.outputs[0].lead:
        draft.summary.append("outputs: " + ", ".join(str(e.fields[0][1]) for e in draft.outputs))


def _output_name(key: Any) -> str:
    if isinstance(key, int):
        return f"output_{key}"
    name = re.sub(r"[^A-Za-z0-9_]", "_", str(key))
    return name if IDENTIFIER.match(name) else f"output_{name}"


def _tensor(value: Any) -> str:
    return f"{str(value.dtype).replace('torch.', '')} {list(value.shape)}"


# --- rendering -------------------------------------------------------------------------------


def flow(value: Any) -> str:
    """A value in YAML flow style; strings quoted only when a plain scalar would misread."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, str):
        return value if PLAIN.match(value) and value.lower() not in YAML_WORDS else json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{flow(str(k))}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return json.dumps(str(value))


def _line(indent: str, key: str, value: Any, comment: str = "") -> str:
    text = f"{indent}{key}: {flow(value)}"
    return f"{text.ljust(len(indent) + 30)}  # {comment}" if comment else text


def _entries(entries: list[Entry]) -> list[str]:
    lines = []
    for entry in entries:
        lines += [f"  # {c}" for c in entry.lead]
        for index, (key, value, comment) in enumerate(entry.fields):
            lines.append(_line("  - " if index == 0 else "    ", key, value, comment))
    return lines


def render(draft: Draft, schema: str) -> str:
    """The manifest's text: every section with a comment that says what it is for."""
    lines = [
        f"# yaml-language-server: $schema={schema}",
        "# A modelbuild manifest, started by `modelbuild init`: one model, where it comes from, what it",
        "# takes and returns, what to build. Every field: docs/manifest.md (or `modelbuild schema`).",
        "# Check it with `modelbuild check`, build it with `modelbuild build`. Lines marked TODO need you.",
        _line("", "name", draft.name, "build/<name>/ and the artifacts' file names"),
        _line("", "version", "0.1.0", "in the metadata and the release folder <name>-<version>"),
        "",
        "# source: where the model comes from. factory is 'module:callable', imported from this file's",
        "# folder or the project root, called with args; it must return a torch.nn.Module.",
        *[f"# {note}" for note in draft.source_notes],
        "source:",
        f"  factory: {draft.factory}",
        _line("  ", "args", draft.args, "keyword arguments for the factory"),
        "  # weights: weights/model.safetensors  # a state_dict loaded after the factory (.safetensors, .pt/.pth/.bin)",
        "",
    ]
    if draft.dims:
        lines += ["# dims: named flexible dimensions, one size shared by every input that names them.", "dims:"]
        lines += [_line("  ", key, value, draft.dims_comment) for key, value in draft.dims.items()]
        lines.append("")
    lines += [
        "# inputs: what forward() takes, in order (a build passes them by position). shape: an int per",
        "# dimension, {min, max, default} for a flexible one, or a name declared under dims.",
        "inputs:",
        *_entries(draft.inputs),
        "",
        "# outputs: what forward() returns; select picks a dict key or a tuple index (leave it out for one tensor).",
        "outputs:",
        *_entries(draft.outputs),
        "",
        "# metadata: written into every artifact (Core ML metadata, ONNX metadata_props).",
        "metadata:",
        f"  description: {flow(draft.name + ' (TODO: one sentence on what it does)')}",
        "  # author: Your Team",
        "  # license: MIT",
        "  # classes: [cat, dog]                # class labels (a classifier's, a segmentation preview's)",
        "",
        "# targets: what to build. Leave one out to skip it; each is verified against PyTorch.",
        "targets:",
        "  coreml: {}                           # .mlpackage; e.g. {deployment_target: iOS17, precision: float32}",
        "  onnx: {}                             # .onnx, run by ONNX Runtime; e.g. {opset: 18}",
        "  # executorch: {backend: xnnpack}     # .pte",
        "  # torchscript: {}                    # .pt",
        "",
        "# validate: how every artifact is compared with the PyTorch model (seeded samples per shape).",
        "validate:",
        "  samples: 2",
        "  shapes: [default, min, max]          # of every flexible input",
        "  # atol: 0.001                        # |artifact - reference| <= atol + rtol * |reference| (per target: targets.<t>.validate)",
        "  # data: samples/inputs.npz           # real inputs by input name, verified too",
        "",
        "# benchmark: median latency of each target beside eager PyTorch (`modelbuild bench`).",
        "benchmark:",
        "  runs: 100",
        "  warmup: 10",
        "  shapes: [default]",
        "",
    ]
    return "\n".join(lines)
