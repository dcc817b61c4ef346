"""Static model merging: pure functions from a base state dict and task vectors to merged task vectors or mask banks.

Single-model methods (``basic``, ``ties``, ``tsv``, ``iso``, ``cart``, ``tall.consensus_*``) return the merged
*task vector* delta, already scaled, so the merged model is ``add_to_base(base, delta)``. Per-task mask methods
(``tall.tall_*``, ``emr``) return a :class:`~mergeflow.merging.bank.MaskBank`; ``reconstruct`` turns it into task
t's model. ``registry`` maps the results-table method names to these functions and their hyperparameters.
"""
