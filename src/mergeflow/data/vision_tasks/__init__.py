"""The image tasks of the offline vision suites, one module per family of generator."""
