"""Every method as its users see it, declared once and torch-free: names, summaries and hyperparameters (name, type,
default, check, help). params.yaml validation, ``--set``/``--help`` and the report read these; the implementations
bind to them by name (``merging/registry.py``, ``adaptation/methods.py``, ``dynamic/methods.py``, ``lora/methods.py``,
``routing/routers.py``), each asserting that it binds exactly the declared names. Keeping them in one light package
means a stage that validates params.yaml depends on these files only, not on the methods' code."""
