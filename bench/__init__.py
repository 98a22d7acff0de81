"""Benchmarks for camera-service; see docs/performance.md for how to run them."""
