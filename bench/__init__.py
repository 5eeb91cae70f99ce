"""Benchmarks and evaluation tools, run from a checkout (``python -m bench.<tool>``); never installed.

The constructed burst scenes and the detection evaluation live here, not in ``gpu_ops``: they measure
the compute, the container does not run them. Nothing under ``gpu_ops``, ``resources`` or
``odins_ravne_assets`` imports this package.
"""
