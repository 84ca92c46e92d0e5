"""Helpers for tongbu's tests and benchmarks (not shipped: ``pip install`` installs no ``tests`` package)."""
