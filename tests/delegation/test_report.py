"""The delegation sentence the summary and bench.md show."""

from __future__ import annotations

from modelbuild.delegation.report import Delegation, LeftOut


def test_operators_left_out_from_one_place_name_it_once() -> None:
    place = "model.upsample (Upsample), models/segmenter.py:27"
    report = Delegation(
        "executorch",
        "xnnpack",
        10,
        6,
        100.0,
        100.0,
        2,
        [LeftOut("aten.full", 1, [place]), LeftOut("aten.index_select", 1, [place]), LeftOut("aten.abs", 2, ["pad (ReflectionPad2d)"])],
    )
    sentence = report.sentence()
    assert sentence.count(place) == 1
    assert "outside it: aten.full ×1, aten.index_select ×1 (model.upsample (Upsample), models/segmenter.py:27); aten.abs ×2 (pad (ReflectionPad2d))" in sentence


def test_more_than_four_operators_left_out_are_counted_not_listed() -> None:
    left = [LeftOut(f"aten.op{i}", 1, [f"block.{i}"]) for i in range(6)]
    sentence = Delegation("executorch", "xnnpack", 12, 6, 0.0, 0.0, 3, left).sentence()
    assert "aten.op3 ×1 (block.3)" in sentence and "aten.op4" not in sentence and sentence.endswith(" and 2 more")
