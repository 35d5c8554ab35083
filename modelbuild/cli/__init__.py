"""The command line: ``main`` parses and dispatches; ``terminal`` is the only place that turns
results into text for a person."""

from modelbuild.cli.main import main

__all__ = ["main"]
