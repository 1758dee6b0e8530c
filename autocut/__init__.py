"""AutoCut: product info + raw footage -> short advertisement videos."""

__all__ = ["__version__"]

__version__ = "0.1.0"
