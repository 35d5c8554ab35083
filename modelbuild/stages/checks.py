"""``<target>.verify`` and ``<target>.bench`` for every target, and ``torch.bench``.

They are generic: a target names its runtime, and these stages run the target's artifact in
it. Registering a target therefore gives it verification and benchmarks with no new code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, ClassVar

from modelbuild.errors import StageFailure, first_line
from modelbuild.graph.node import StageNode
from modelbuild.manifest.spec import ModelSpec
from modelbuild.runtimes import RUNTIMES
from modelbuild.stages import STAGES
from modelbuild.stages.base import Stage, StageJob
from modelbuild.stages.capture import input_signature
from modelbuild.store.paths import disk_size
from modelbuild.targets import TARGETS


def verified_artifact(target: Any) -> tuple[str, str]:
    """(stage, file) that verification and benchmarks run: ``Target.verified``, else the
    first artifact of the target's last stage."""
    if target.verified is not None:
        return target.verified
    return target.artifact_stage(), STAGES.get(target.artifact_stage()).artifacts[0]


def _artifact_path(job: StageJob, target: Any) -> Path:
    stage, pattern = verified_artifact(target)
    return job.inputs[stage] / pattern.format(model=job.node.model)


class VerifyStage(Stage):
    """Runs the artifact on the reference samples and compares every output."""

    target: ClassVar[str]
    # v2: the runtime's delegation report
    # v3: outputs whose shapes differ in unit axes fail, except where the runtime says its format
    #     drops or adds them (Core ML)
    version = 3
    lock = "verdict"  # its figures compare float outputs; the verdict is what must reproduce
    role = "verify"

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        options = model.data["targets"][cls.target]
        runtime = RUNTIMES.get(TARGETS.get(cls.target).runtime)
        return {"validate": options["validate"], "fixed_shapes": options.get("fixed_shapes", False), "runtime": runtime.key_params(options)}

    @classmethod
    def skip_reason(cls, node: StageNode) -> str | None:
        runtime = RUNTIMES.get(TARGETS.get(cls.target).runtime)
        return runtime.unavailable(node.context["targets"].get(cls.target) or {}, "verify")

    def run(self, job: StageJob) -> None:
        from modelbuild.checks.cases import at_default_shapes, model_feeds, read_cases
        from modelbuild.checks.compare import compare, worst

        target = TARGETS.get(self.target)
        tolerance = job.node.params["validate"]
        atol, rtol = tolerance["atol"], tolerance["rtol"]
        cases, names = read_cases(job.inputs["reference"])
        if job.node.params["fixed_shapes"]:
            cases = [c for c in cases if at_default_shapes(job.node.context["inputs"], c.raw)]
            job.notes.append(f"fixed_shapes: verified at the default shapes only ({len(cases)} samples)")
            if not cases:
                raise StageFailure("fixed_shapes: no reference sample is at the default shapes; add 'default' to validate.shapes")
        runtime = RUNTIMES.get(target.runtime)(_artifact_path(job, target), job.node.context, threads=1)
        per_output: dict[str, list[Any]] = {name: [] for name in names}
        failed_cases = []
        first_failure: Any = None
        for case in cases:
            try:
                got = runtime.run(model_feeds(job.node.context["inputs"], case.raw), case.raw)
            except Exception as exc:  # noqa: BLE001
                raise StageFailure(f"{target.runtime} fails on the {case.shape} sample: {first_line(exc)}") from exc
            if len(got) != len(case.expected):
                raise StageFailure(f"the artifact returns {len(got)} output(s), the PyTorch model {len(case.expected)}")
            for name, g, w in zip(names, got, case.expected):
                error = compare(name, g, w, atol, rtol, runtime.unit_axes_may_differ)
                per_output[name].append(error)
                if not error.passed:
                    failed_cases.append(case.shape)
                    first_failure = first_failure or case
        if cases:
            _report_delegation(runtime, job, model_feeds(job.node.context["inputs"], cases[0].raw))
        runtime_notes, runtime_figures = runtime.verification_notes()
        job.notes += runtime_notes
        job.info.update(runtime_figures)
        figures = [worst(errors) for errors in per_output.values()]
        passed = all(f.passed for f in figures)
        verdict = "pass" if passed else ("warn" if tolerance["on_failure"] == "warn" else "fail")
        text = "; ".join(
            f"{f.name}: max abs {f.max_abs:.2g}, max rel {f.max_rel:.2g}, cos {f.cosine:.6f}" + (f" ({f.problem})" if f.problem else "") for f in figures
        )
        summary = f"{verdict.upper()} {text} (atol {atol:g}, rtol {rtol:g}; {len(cases)} samples)"
        job.info.update({"verdict": verdict, "summary": summary, "atol": atol, "rtol": rtol, "samples": len(cases), "outputs": [f.to_json() for f in figures]})
        (job.out / "verify.json").write_text(json.dumps(job.info, indent=1, sort_keys=True))
        if not passed:
            job.notes += _explained(runtime, job, first_failure)
            shapes = ", ".join(sorted(set(failed_cases)))
            message = f"verification failed at shape(s) {shapes}: {text} exceeds atol {atol:g} + rtol {rtol:g}·|reference|"
            if verdict == "fail":
                raise StageFailure(message + " (validate.on_failure: warn reports without failing)")
            job.notes.append(message + " (on_failure: warn)")


def _report_delegation(runtime: Any, job: StageJob, feeds: list[Any]) -> None:
    """The runtime's account of where the artifact ran (ONNX Runtime: fusions and execution
    providers). A report that cannot be made costs a log line, never the verdict."""
    try:
        report = runtime.delegation(feeds)
    except Exception:  # noqa: BLE001
        job.log.warning("delegation report failed", exc_info=True)
        return
    if report is None:
        return
    job.info["delegation"] = report.to_json()
    if report.low():
        job.notes.append(f"delegation: {report.sentence()}")


def _explained(runtime: Any, job: StageJob, case: Any) -> list[str]:
    """Where inside the artifact the first failing sample departs (the runtime's own locator);
    a locator that fails costs a note, never the verification's verdict."""
    from modelbuild.checks.cases import model_feeds

    try:
        return runtime.explain_mismatch(model_feeds(job.node.context["inputs"], case.raw), case.raw)
    except Exception as exc:  # noqa: BLE001
        job.log.warning("explain failed", exc_info=True)
        return [f"explain: could not locate the departing op ({type(exc).__name__}: {first_line(exc)})"]


class BenchStage(Stage):
    """Times the artifact and the eager model in turns, in one process, threads pinned."""

    target: ClassVar[str]  # "torch" for the eager baseline
    # v2: benchmark.threads may be a list; v3: ExecuTorch timed without the binding's output copy
    # v4: ONNX Runtime's pool sleeps between runs (spinning starved the torch runs timed beside it)
    # v5: it spins within a run again, and stops when the run returns
    version = 5
    exclusive = True
    lock = "none"  # timings are measurements, not build outputs
    role = "measure"

    @classmethod
    def params(cls, model: ModelSpec) -> dict[str, Any]:
        bench = {k: v for k, v in model.data["benchmark"].items() if k != "backends"}
        options = model.data["targets"].get(cls.target) or {}
        runtime = {} if cls.target == "torch" else RUNTIMES.get(TARGETS.get(cls.target).runtime).key_params(options)
        return {"benchmark": bench, "inputs": input_signature(model, full=True), "fixed_shapes": options.get("fixed_shapes", False), "runtime": runtime}

    @classmethod
    def skip_reason(cls, node: StageNode) -> str | None:
        if cls.target == "torch":
            return None
        runtime = RUNTIMES.get(TARGETS.get(cls.target).runtime)
        return runtime.unavailable(node.context["targets"].get(cls.target) or {}, "bench")

    def run(self, job: StageJob) -> None:
        from modelbuild.checks.cases import at_default_shapes, generate, shape_choices

        ctx = job.node.context
        bench = job.node.params["benchmark"]
        counts = thread_counts(bench["threads"])
        choices = shape_choices(ctx["inputs"], bench["shapes"])
        samples = []
        for choice in choices:
            raw = generate(ctx["inputs"], choice.shapes, seed=0)
            if job.node.params["fixed_shapes"] and not at_default_shapes(ctx["inputs"], raw):
                job.notes.append(f"fixed_shapes: {choice.label} not benchmarked (the program takes the default shapes only)")
                continue
            samples.append((choice, raw))
        rows = []
        # The time budget is shared by every (threads, shape) figure of the stage.
        budget = bench["time_budget"] / max(len(samples) * len(counts), 1)
        for threads in counts:
            rows += self._timed(job, threads, samples, budget)
        job.info["bench"] = rows
        many = len(counts) > 1
        job.info["summary"] = "; ".join(
            f"{r['shape']}{f' ({threads_label(r)})' if many else ''}: {r['mean_ms']:.2f} ± {r['std_ms']:.2f} ms, {r['speedup']:.2f}× torch" for r in rows
        )
        (job.out / "bench.json").write_text(json.dumps(rows, indent=1, sort_keys=True))

    def _timed(self, job: StageJob, threads: int, samples: list[tuple[Any, Any]], budget: float) -> list[dict[str, Any]]:
        """Every shape at one thread count: the runtimes are made for that count (a session's
        pool is sized when it is created)."""
        from modelbuild.checks.cases import model_feeds
        from modelbuild.checks.timing import adaptive, interleaved, stats

        ctx = job.node.context
        bench = job.node.params["benchmark"]
        eager = RUNTIMES.get("torch")(job.inputs["source"], ctx, threads)  # the eager model from the source snapshot
        runtime, size = None, None
        if self.target != "torch":
            target = TARGETS.get(self.target)
            artifact = _artifact_path(job, target)
            size = disk_size(artifact)
            runtime = RUNTIMES.get(target.runtime)(artifact, ctx, threads)
        rows = []
        for choice, raw in samples:
            feeds = model_feeds(ctx["inputs"], raw)
            calls = {"torch": eager.prepare_call(feeds, raw)}
            if runtime is not None:
                calls[self.target] = runtime.prepare_call(feeds, raw)
            stopped = "count"
            if bench["runs"] == "auto":
                timings, stopped = adaptive(calls, bench["warmup"], budget, _progress_logger(job, f"{choice.label}, {threads} thread(s)", budget))
            else:
                timings = interleaved(calls, bench["warmup"], bench["runs"])
            baseline = stats(timings["torch"])
            mine = stats(timings[self.target]) if runtime is not None else baseline
            rows.append(
                {
                    "backend": self.target,
                    "shape": choice.label,
                    "shapes": choice.shapes,
                    **mine,
                    "torch_mean_ms": baseline["mean_ms"],
                    "speedup": baseline["mean_ms"] / mine["mean_ms"],
                    "size": size,
                    "threads": threads,
                    "stopped": stopped,  # runs: auto: stable, budget or limit; count: the runs asked for
                }
            )
        return rows


def thread_counts(setting: Any) -> list[int]:
    """``benchmark.threads`` as counts: one count or a list, 'cores' for this machine's CPUs."""
    import os

    values = setting if isinstance(setting, list) else [setting]
    counts = [os.cpu_count() or 1 if value == "cores" else int(value) for value in values]
    return list(dict.fromkeys(counts))  # [1, "cores"] on a 1-CPU machine times once


def threads_label(row: dict[str, Any]) -> str:
    return f"{row['threads']} thread{'s' if row['threads'] != 1 else ''}"


def _progress_logger(job: StageJob, shape: str, budget: float) -> Callable[[int, float], None]:
    """A "progress:" log line at most every two seconds: what the live display shows."""
    last = [0.0]

    def report(rounds: int, spent: float) -> None:
        if spent - last[0] >= 2.0:
            last[0] = spent
            job.log.info("progress: %s, %d rounds, %.0f of at most %.0f s", shape, rounds, spent, budget)

    return report


def derive(name: str) -> type[Stage] | None:
    """``<target>.verify`` and ``<target>.bench`` for any registered target (and ``torch.bench``,
    the eager baseline), made on first use: registering a target is all a target does."""
    target, _, kind = name.rpartition(".")
    if kind not in ("verify", "bench") or not target:
        return None
    if target == "torch":
        return _make(BenchStage, "torch", ("source", "capture"), ("torch",)) if kind == "bench" else None
    if target not in TARGETS:
        return None
    spec = TARGETS.get(target)
    tools = RUNTIMES.get(spec.runtime).distributions
    if kind == "verify":
        return _make(VerifyStage, target, ("reference", verified_artifact(spec)[0]), tools)
    return _make(BenchStage, target, ("source", "capture", verified_artifact(spec)[0]), ("torch", *tools))


def _make(base: type, target: str, deps: tuple[str, ...], tools: tuple[str, ...]) -> type[Stage]:
    kind = "verify" if base is VerifyStage else "bench"
    return type(
        f"{target.title()}{kind.title()}Stage", (base,), {"name": f"{target}.{kind}", "target": target, "deps": deps, "tools": tools, "__module__": __name__}
    )
