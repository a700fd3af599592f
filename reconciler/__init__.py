"""Declarative reconciler for ClearML Datasets."""

__version__ = "0.1.0"
