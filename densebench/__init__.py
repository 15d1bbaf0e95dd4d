"""densebench: benchmark and optimize DenseNet-121 inference with pytest-benchmark."""

__version__ = "0.1.0"
