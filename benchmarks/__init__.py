"""Benchmarks for ssam_jax: step time, memory, FLOPs and mask-refresh cost."""
