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
from modelbuild.usercode.discover import local_module_files
from modelbuild.usercode.tree import folder_label, import_roots, label_of, lay_out


def plugin_params(model: ModelSpec) -> dict[str, Any]:
    """What a converting stage's key holds of ``plugins``: the names, and where Python resolves
    them from (the manifest's folder inside the project), since that decides which file loads."""
    if not model.data["plugins"]:
        return {"plugins": []}
    return {"plugins": model.data["plugins"], "plugin_folder": folder_label(model.folder, model.root)}


def plugin_files(model: ModelSpec) -> dict[str, str]:
    """Label -> file of every plugin module found in the manifest's folder or the project root,
    and of every local module it imports. (Installed plugins are keyed by their distribution
    version through the stage's tools.)"""
    paths = local_module_files(model.data["plugins"], [model.folder, model.root])
    return {label_of(path, model.root): str(path) for path in paths}


def import_plugins(params: dict[str, Any], files: dict[str, Path], into: Path, where: Callable[[str], Location]) -> list[Any]:
    """Import each plugin from the snapshots of its files, laid out under ``into`` (the worker
    forgets them when the stage ends)."""
    lay_out({label: path for label, path in files.items() if label.endswith(".py")}, into)
    for root in reversed(import_roots(into, params.get("plugin_folder", ""))):
        sys.path.insert(0, str(root))
    modules = []
    for index, name in enumerate(params["plugins"]):
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
