"""The command line: ``commands`` parses and dispatches and owns the exit codes; ``terminal``
owns the rich console (progress, summary and tables)."""

from modelbuild.cli.commands import main

__all__ = ["main"]
