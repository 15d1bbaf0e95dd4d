"""The benchmark suite itself, shipped in the package so ``densebench run`` works from any install.

``benchmarks/test_inference.py`` in a checkout imports it, so ``pytest benchmarks`` runs it.
"""
