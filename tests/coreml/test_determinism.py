"""A Core ML package's bytes do not depend on what the worker converted before."""

from __future__ import annotations

import pytest


@pytest.mark.convert
def test_a_flexible_model_converts_to_the_same_spec_after_other_conversions() -> None:
    import coremltools as ct
    import torch

    from modelbuild.coreml.determinism import fresh_conversion_state

    class Double(torch.nn.Module):
        def forward(self, x):
            return x * 2 + x.shape[1]

    traced = torch.jit.trace(Double().eval(), torch.ones(1, 4))

    def convert() -> bytes:
        fresh_conversion_state()
        model = ct.convert(
            traced, inputs=[ct.TensorType("x", shape=(1, ct.RangeDim(1, 16, default=4)))], convert_to="mlprogram", minimum_deployment_target=ct.target.iOS15
        )
        return model.get_spec().SerializeToString(deterministic=True)

    first = convert()
    for _ in range(2):  # other flexible conversions in the same process
        ct.convert(
            traced, inputs=[ct.TensorType("x", shape=(1, ct.RangeDim(1, 8, default=2)))], convert_to="mlprogram", minimum_deployment_target=ct.target.iOS15
        )
    assert convert() == first
