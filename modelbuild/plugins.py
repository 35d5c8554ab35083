"""``plugins:``: the user's modules that teach the converters new operators.

A plugin is imported before conversion and registers what it knows through the converters'
own mechanisms (coremltools ``register_torch_op``; ``ONNX_TRANSLATIONS`` for the torch ONNX
exporter's ``custom_translation_table``). Its file is part of the conversion keys, so editing a
plugin re-runs exactly the conversions it can change.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Callable

from modelbuild.errors import Location, UserError
from modelbuild.manifest.spec import ModelSpec


def plugin_files(model: ModelSpec) -> dict[str, str]:
    """Label -> file of every plugin found in the manifest's folder or the project root.
    (Installed plugins are keyed by their distribution version through the stage's tools.)"""
    from modelbuild.stages.source import find_local_module

    files = {}
    for name in model.data["plugins"]:
        path = find_local_module(name, model)
        if path is not None:
            files[f"plugin {name}"] = str(path)
    return files


def import_plugins(names: list[str], folders: list[Path], where: Callable[[str], Location]) -> list[Any]:
    """Import each plugin (the manifest's folder and the project root first on sys.path)."""
    for folder in reversed(folders):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    modules = []
    for index, name in enumerate(names):
        try:
            modules.append(importlib.import_module(name))
        except Exception as exc:  # noqa: BLE001 - the plugin's own error, said with its name
            raise UserError(f"{where(f'plugins[{index}]')}: importing plugin {name!r} failed: {type(exc).__name__}: {exc}") from exc
    return modules


def onnx_translations(modules: list[Any]) -> dict[Any, Any]:
    table: dict[Any, Any] = {}
    for module in modules:
        table.update(getattr(module, "ONNX_TRANSLATIONS", {}) or {})
    return table
