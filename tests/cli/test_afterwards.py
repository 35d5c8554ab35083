"""Work a handed-over build does after its client has its answer (modelbuild.cli.afterwards)."""

from __future__ import annotations

from modelbuild.cli import afterwards


def test_work_runs_at_once_unless_held_and_then_in_order_at_finish() -> None:
    done: list[str] = []
    afterwards.later(lambda: done.append("now"))
    assert done == ["now"] and not afterwards.holding()
    afterwards.hold()
    try:
        afterwards.later(lambda: done.append("first"))
        afterwards.later(lambda: done.append("second"))
        assert done == ["now"] and afterwards.holding()
    finally:
        afterwards.finish()
    assert done == ["now", "first", "second"] and not afterwards.holding()
    afterwards.finish()  # nothing held: nothing to do
    assert done == ["now", "first", "second"]
