"""The worker's promise between stages: no user module, no plugin registration and no
sys.path entry of one stage reaches the next."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modelbuild.graph.worker import _forgetting_user_modules

PLUGIN = """\
from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op


@register_torch_op  # no override=True: a second registration in one process would raise
def modelbuild_test_op(context, node):
    raise NotImplementedError
"""


def test_a_module_imported_from_the_store_is_forgotten_with_its_path(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    tree = cache / "objects" / "ab" / ("ab" * 32) / "tree"
    tree.mkdir(parents=True)
    (tree / "modelbuild_test_user_module.py").write_text("VALUE = 1\n")
    path = list(sys.path)
    with _forgetting_user_modules(cache, str(tmp_path)):
        sys.path.insert(0, str(tree))
        import modelbuild_test_user_module  # noqa: F401

        assert "modelbuild_test_user_module" in sys.modules
    assert "modelbuild_test_user_module" not in sys.modules
    assert sys.path == path


@pytest.mark.convert
def test_a_plugin_registration_is_taken_back_and_can_be_made_again(tmp_path: Path) -> None:
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY

    cache = tmp_path / "cache"
    tree = cache / "objects" / "cd" / ("cd" * 32) / "tree"
    tree.mkdir(parents=True)
    (tree / "modelbuild_test_plugin.py").write_text(PLUGIN)
    builtin = _TORCH_OPS_REGISTRY.name_to_func_mapping.get("relu")
    for _ in range(2):  # two stages in one worker import the same plugin
        with _forgetting_user_modules(cache, str(tmp_path)):
            sys.path.insert(0, str(tree))
            import modelbuild_test_plugin  # noqa: F401

            assert "modelbuild_test_op" in _TORCH_OPS_REGISTRY.name_to_func_mapping
        assert "modelbuild_test_op" not in _TORCH_OPS_REGISTRY.name_to_func_mapping
    assert _TORCH_OPS_REGISTRY.name_to_func_mapping.get("relu") is builtin
