"""The text tasks of the offline text suites: sentences generated from templates, one module per family."""
