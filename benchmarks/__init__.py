"""Benchmarks of nodetunnel on the mini-cluster (see benchmarks/run.py and scripts/bench)."""
