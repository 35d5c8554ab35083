"""Reproducible releases: ``bundle`` writes a model's release folder from verified artifacts;
``lockfile`` records every stage's key and output digest in ``modelbuild.lock`` and checks a
build against it (``--locked``)."""
