"""mergeflow: merge fine-tuned experts into one multi-task model, and route inputs whose task is unknown."""

__version__ = "0.1.0"
