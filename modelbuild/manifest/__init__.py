"""Manifests: finding, parsing (with line numbers), validating and resolving them.

The data types (``spec``, ``shapes``, ``metadata``, ``parse``) sit low: stages and runtimes
read them. ``load`` with ``schema``, ``defaults`` and ``semantics`` sits above the target
registry, whose classes own the ``targets.<name>`` tables. This file imports nothing, so
reading a ``ModelSpec`` never pulls the loader in.
"""
