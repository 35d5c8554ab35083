"""Adapting the user's module for capture: class replacement, a user wrapper, output selection
and the folded per-channel image normalisation."""

from __future__ import annotations

import functools
from typing import Any, Callable

from modelbuild.errors import Location, UserError
from modelbuild.manifest.preprocess import image_preprocessing
from modelbuild.torch_side.loading import import_class_path, import_object


def replace_modules(model: Any, replace: dict[str, str], where: Callable[[str], Location]) -> list[str]:
    """Swap module classes in place, carrying state over; return what was replaced."""
    import torch

    done = []
    for old_path, new_path in replace.items():
        old_cls = import_class_path(old_path, where(f"wrapper.replace.{old_path}"))
        new_cls = import_class_path(new_path, where(f"wrapper.replace.{old_path}"))
        for parent_name, parent in list(model.named_modules()):
            for child_name, child in list(parent.named_children()):
                if type(child) is not old_cls:
                    continue
                try:
                    new = new_cls()
                except TypeError:
                    new = new_cls.__new__(new_cls)
                    torch.nn.Module.__init__(new)
                # Modules keep their configuration and state in __dict__ (padding, inplace,
                # _parameters, _buffers): carrying it over keeps weights where names match.
                new.__dict__.update(child.__dict__)
                setattr(parent, child_name, new)
                done.append(f"{parent_name + '.' if parent_name else ''}{child_name}: {old_cls.__name__} → {new_cls.__name__}")
    return done


def select(value: Any, path: str) -> Any:
    """Follow a dotted selector through dicts, tuples, lists and attributes."""
    for part in str(path).split("."):
        if isinstance(value, dict):
            value = value[part]
        elif isinstance(value, (list, tuple)):
            value = value[int(part)]
        else:
            value = getattr(value, part)
    return value


def describe(value: Any) -> str:
    if isinstance(value, dict):
        return "dict with keys " + ", ".join(repr(k) for k in value)
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def check_selectors(output: Any, outputs: list[dict[str, Any]] | None, where: Callable[[str], Location]) -> None:
    """Fail with the model's actual output structure when a selector does not fit."""
    for i, out in enumerate(outputs or []):
        if "select" not in out:
            continue
        try:
            select(output, out["select"])
        except (KeyError, IndexError, AttributeError, ValueError):
            raise UserError(
                f"{where(f'outputs[{i}].select')}: selector {str(out['select'])!r} does not exist in the model's output ({describe(output)})"
            ) from None


def prepare(
    model: Any,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]] | None,
    wrapper: dict[str, Any],
    where: Callable[[str], Location],
    channels_last: bool = False,
) -> Any:
    """The module that is captured: the user's model plus selection and folded normalisation.
    With ``channels_last`` (``prepare.channels_last``), its 4-D inputs are made channels-last
    on entry, as PyTorch's mobile recipe does with the input tensor: the captured program then
    carries the layout, and backends that compute in NHWC (XNNPACK) need no transposes."""
    if "class" in wrapper:
        user_wrapper = import_object(wrapper["class"], where("wrapper.class"), what="wrapper class")
        try:
            model = user_wrapper(model)
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{where('wrapper.class')}: wrapper {wrapper['class']!r} raised {type(exc).__name__}: {exc}") from exc
    factors = []
    for inp in inputs:
        pre = image_preprocessing(inp) if inp["kind"] == "image" else None
        factors.append(pre.channel_factors if pre and pre.channel_factors else None)
    selectors = [str(out.get("select", i)) for i, out in enumerate(outputs)] if outputs else None
    if selectors == ["0"] and outputs and "select" not in outputs[0]:
        selectors = None  # one output, no selector: pass the model's output through
    layouts = [channels_last and len(inp.get("shape") or inp.get("default_shape") or inp["shapes"][0]) == 4 for inp in inputs]
    return Prepared(model, factors, selectors, layouts).eval()


@functools.cache
def _prepared_class() -> type:
    import torch

    class Prepared(torch.nn.Module):
        def __init__(self, model: Any, factors: list[Any], selectors: list[str] | None, channels_last: list[bool] | None = None) -> None:
            super().__init__()
            self.model = model
            self.channels_last = channels_last or [False] * len(factors)
            self.selectors = selectors
            self.scaled = [f is not None for f in factors]
            for index, f in enumerate(factors):
                if f is not None:
                    self.register_buffer(f"channel_factors_{index}", torch.tensor(f, dtype=torch.float32).view(1, -1, 1, 1))

        def raw(self, *inputs: Any) -> Any:
            """The user's model output before selection (selector checks read it)."""
            args = [x * getattr(self, f"channel_factors_{i}") if self.scaled[i] else x for i, x in enumerate(inputs)]
            args = [x.contiguous(memory_format=torch.channels_last) if self.channels_last[i] else x for i, x in enumerate(args)]
            return self.model(*args)

        def forward(self, *inputs: Any) -> Any:
            result = self.raw(*inputs)
            if self.selectors is None:
                return result
            picked = tuple(select(result, s) for s in self.selectors)
            return picked[0] if len(picked) == 1 else picked

    return Prepared


def Prepared(model: Any, factors: list[Any], selectors: list[str] | None, channels_last: list[bool] | None = None) -> Any:  # noqa: N802 - a lazy class
    return _prepared_class()(model, factors, selectors, channels_last)
