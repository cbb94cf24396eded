"""pointbench: a benchmark harness for self-supervised point-cloud learning."""

__version__ = "0.1.0"
