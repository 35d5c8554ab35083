"""``reference``: the wrapped PyTorch model (fp32, eval) on seeded samples at every shape
``validate`` asks for, plus ``validate.data``. Every ``<target>.verify`` compares with this."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelbuild.errors import UserError, first_line
from modelbuild.manifest.spec import ModelSpec
from modelbuild.stages import STAGES
from modelbuild.stages.base import Stage, StageJob
from modelbuild.stages.capture import module_params


def output_names(outputs: list[dict[str, Any]] | None, count: int) -> list[str]:
    names = [o["name"] for o in outputs or []]
    return names + [f"output_{i}" for i in range(len(names), count)]


@STAGES.register
class ReferenceStage(Stage):
    name = "reference"
    # v3: the model is built with the random generators seeded (torch_side.loading.seeded)
    # v4: a 0-d output stays 0-d; the model runs on copies of the samples
    version = 4
    # PyTorch's float outputs differ in the last bits between CPUs (AVX2 and AVX-512 kernels
    # accumulate in another order): the lock checks them by tolerance.
    lock = "tolerance"
    tools = ("torch", "numpy")
    warm_imports = ("torch",)
    deps = ("source", "capture")

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        validate = model.data["validate"]
        params = {"validate": {k: validate[k] for k in ("samples", "shapes") if k in validate}, **module_params(model)}
        if "onnx" in model.data["source"]:
            from importlib import metadata

            try:  # ONNX Runtime computes this reference: its version is part of the key
                params["onnxruntime"] = metadata.version("onnxruntime")
            except metadata.PackageNotFoundError:
                params["onnxruntime"] = "not installed"
        return params

    @classmethod
    def files(cls, model: ModelSpec) -> dict[str, str]:
        data = model.data["validate"].get("data")
        return {data: str(model.resolve_path(data))} if data else {}

    def run(self, job: StageJob) -> None:
        import numpy as np

        from modelbuild.checks.cases import Case, generate, load_data_file, model_feeds, shape_choices, write_cases
        from modelbuild.torch_side.eager import build_prepared, run_numpy

        ctx = job.node.context
        params = job.node.params
        inputs = ctx["inputs"]
        # An ONNX source is checked against ONNX Runtime on the user's file, not the module made from it.
        prepared, _model, _notes = build_prepared(ctx, job.inputs["source"], params["wrapper"], job.where, runtime="onnx" in ctx["source"])
        cases: list[Case] = []
        for position, choice in enumerate(shape_choices(inputs, params["validate"]["shapes"], enumerated=True)):
            for sample in range(params["validate"]["samples"]):
                raw = generate(inputs, choice.shapes, seed=1000 * (position + 1) + sample)
                cases.append(Case(f"{choice.label.replace(' ', '_').replace('=', '-')}-{sample}", choice.label, raw))
        for path in job.files.values():  # validate.data, when declared
            try:
                cases.append(Case("data", "validate.data", load_data_file(Path(path), inputs)))
            except ValueError as exc:
                raise UserError(f"{job.where('validate.data')}: {exc}") from None
        count = 0
        for case in cases:
            try:
                # The model runs on copies: one that writes into its input would change the stored
                # sample that every target is then fed. np.require keeps a 0-d result 0-d
                # (ascontiguousarray made it (1,), and a scalar output then failed every verify).
                feeds = [np.array(f, copy=True) for f in model_feeds(inputs, case.raw)]
                case.expected = [np.require(a, requirements="C") for a in run_numpy(prepared, feeds)]
            except Exception as exc:  # noqa: BLE001
                raise UserError(
                    f"{job.where('validate')}: the PyTorch model fails on the {case.shape} sample: {type(exc).__name__}: {first_line(exc)}"
                ) from exc
            count = len(case.expected)
        names = output_names(ctx["outputs"], count)
        write_cases(job.out, cases, names)
        job.info["figures"] = output_figures(cases, names)
        job.info["cases"] = len(cases)
        job.info["summary"] = f"{len(cases)} sample(s) at {len({c.shape for c in cases})} shape(s); outputs {', '.join(names)}"


def output_figures(cases: list[Any], names: list[str]) -> dict[str, list[float]]:
    """Per output, the mean and the largest magnitude over every sample: what ``--locked``
    compares by tolerance when the reference bytes differ on another CPU."""
    import numpy as np

    figures = {}
    for index, name in enumerate(names):
        values = np.concatenate([np.asarray(c.expected[index], dtype=np.float64).ravel() for c in cases]) if cases else np.zeros(0)
        figures[name] = [float(values.mean()) if values.size else 0.0, float(np.abs(values).max()) if values.size else 0.0]
    return figures
