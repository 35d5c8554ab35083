"""What verification and benchmarking share: sample cases, error figures, latency statistics.

numpy only: these modules never import torch, so they are cheap to import and to test.
"""
