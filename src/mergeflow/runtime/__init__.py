"""Where and in which precision tensors run: the ``runtime:`` section of params.yaml.

``runtime.spec`` is the torch-free grammar params.py validates with; ``runtime.device`` turns a spec into a
``torch.device`` and gives the autocast context. Library functions take ``device`` (and, where a model runs,
``autocast``) as arguments, defaulting to the CPU without autocast; only the stages read params.
"""
