"""The densebench suite (``pytest benchmarks``); the test lives in the package, see densebench/suite."""

from densebench.suite.test_inference import test_inference, test_scenario

__all__ = ["test_inference", "test_scenario"]
