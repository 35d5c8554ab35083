"""The stage graph: planning (manifests to frozen nodes), keys, and execution."""
