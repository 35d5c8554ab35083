from __future__ import annotations

import os
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from modelbuild.store.hashing import digest_json, hash_tree
from modelbuild.store.objects import ObjectStore
from modelbuild.store.state import StateDB

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=5), json_values, max_size=5))
def test_digest_ignores_key_order(value: dict) -> None:
    reordered = dict(reversed(list(value.items())))
    assert digest_json(value) == digest_json(reordered)


@given(st.dictionaries(st.text(max_size=5), st.integers(), min_size=1, max_size=5))
def test_digest_changes_with_content(value: dict) -> None:
    changed = {**value, next(iter(value)): value[next(iter(value))] + 1}
    assert digest_json(value) != digest_json(changed)


def test_tree_digest_ignores_mtime_and_location(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name / "sub").mkdir(parents=True)
        (tmp_path / name / "sub" / "f").write_bytes(b"x")
        (tmp_path / name / "g").write_bytes(b"y")
    os.utime(tmp_path / "b" / "g", (1, 1))
    assert hash_tree(tmp_path / "a") == hash_tree(tmp_path / "b")
    (tmp_path / "b" / "g").write_bytes(b"z")
    assert hash_tree(tmp_path / "a") != hash_tree(tmp_path / "b")


def test_stat_cache_does_not_reread_unchanged_files(tmp_path: Path) -> None:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"a" * 1000)
    old = time.time() - 60
    os.utime(weights, (old, old))
    db = StateDB(tmp_path / "state.sqlite")
    first = db.file_digest(weights)
    assert db.bytes_hashed == 1000
    second = StateDB(tmp_path / "state.sqlite")
    assert second.file_digest(weights) == first
    assert second.bytes_hashed == 0
    weights.write_bytes(b"b" * 1000)
    os.utime(weights, (old + 1, old + 1))
    assert second.file_digest(weights) != first


def test_object_store_put_is_content_addressed(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    one = store.scratch()
    (one / "f").write_bytes(b"same")
    two = store.scratch()
    (two / "f").write_bytes(b"same")
    assert store.put(one) == store.put(two)
    assert not one.exists() and not two.exists()
    assert list((tmp_path / "tmp").iterdir()) == []
