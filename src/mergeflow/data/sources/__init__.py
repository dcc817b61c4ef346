"""Real datasets by reference: a Hugging Face id, a folder on disk, an ImageFolder root or a torchvision root.

A :class:`~mergeflow.data.sources.reference.DatasetRef` is plain data (it can live in params.yaml); opening one gives
lazy examples (a PIL image or a tuple of strings, and an int label) with the class names the dataset itself carries.
The package is named ``sources`` so that it never shadows the ``datasets`` library it wraps.

Modules, one idea each: ``reference`` (what a reference is, validated), ``torchvision_roots`` (the allowed torchvision
classes), ``examples`` (the lazy split every source returns), ``hf_source`` / ``folder_source`` /
``torchvision_source`` (one reader per kind), ``opening`` (reference -> split, class names resolved), ``validation``
(the papers' validation split), ``content_hash`` (a prepared dataset's identity), ``real_task`` and ``tasks_tall``
(the papers' 20 vision tasks as data).
"""
