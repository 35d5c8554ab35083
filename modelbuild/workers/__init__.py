"""Warm workers: a per-project fork server with the heavy libraries already imported.

``import coremltools`` takes seconds and ``executorch.exir`` as long again; a weights-only
rebuild that spawns fresh processes spends most of its time importing. Like Bazel's
persistent workers and the Gradle daemon, a server process (started on first use, stopped
after an idle time) keeps torch, coremltools, ExecuTorch and ONNX imported and exercised
once; every stage then runs in a fork of it. A fork per stage, not a reused process: no user
module, registered plugin or compat override can outlive the stage that loaded it, because
the process that loaded it ends with the stage.
"""
