"""Test-time adaptation of merged models: AdaMerging (learned merge coefficients) and AdaRank (learned binary
masks over the singular components of task vectors), both by entropy minimisation on unlabelled test batches.

``components`` freezes each base method (Task Arithmetic, CART, TSV-M, Iso-CTS, or no SVD at all) as a
:class:`~mergeflow.adaptation.components.Decomposition`; ``model.AdaptiveMerge`` puts learnable coefficients and
straight-through masks (``ste``) on top of it, so that its step-0 model is the static method; ``loop.adapt``
minimises the summed prediction entropy (``entropy``) and returns the final hard-masked state dict.
"""
