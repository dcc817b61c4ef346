"""mergeflow: merge fine-tuned experts into one multi-task model, and route inputs whose task is unknown.

The public API (``mergeflow.api``) is exported here and imported on first use, so that ``import mergeflow`` and
the command line stay fast (torch is loaded only when a function needs it)::

    import mergeflow as mf
    merged = mf.merge("ties", base, {"cars": cars, "svhn": svhn}, k=0.2, scale=1.0)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    **{name: "mergeflow.api" for name in (
        "load_checkpoint", "save_checkpoint", "task_vectors", "merge", "merge_bank", "fit_task_router", "save_router",
        "load_router", "serve_routed", "adapt",
    )},
    "TaskVector": "mergeflow.statedict.task_vector_algebra",
    "MaskBank": "mergeflow.merging.bank",
    "reconstruct": "mergeflow.merging.bank",
    "method_names": "mergeflow.merging.registry",
    "merge_files": "mergeflow.merging.streaming",
    "Router": "mergeflow.routing.routers",
    "Prediction": "mergeflow.routing.served",
    "AdaptationResult": "mergeflow.adaptation.loop",
    "mixed_lora_linear": "mergeflow.lora.mixing",
    "MergeflowError": "mergeflow.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from mergeflow.adaptation.loop import AdaptationResult as AdaptationResult
    from mergeflow.api import adapt as adapt
    from mergeflow.api import fit_task_router as fit_task_router
    from mergeflow.api import load_checkpoint as load_checkpoint
    from mergeflow.api import load_router as load_router
    from mergeflow.api import merge as merge
    from mergeflow.api import merge_bank as merge_bank
    from mergeflow.api import save_checkpoint as save_checkpoint
    from mergeflow.api import save_router as save_router
    from mergeflow.api import serve_routed as serve_routed
    from mergeflow.api import task_vectors as task_vectors
    from mergeflow.errors import MergeflowError as MergeflowError
    from mergeflow.lora.mixing import mixed_lora_linear as mixed_lora_linear
    from mergeflow.merging.bank import MaskBank as MaskBank
    from mergeflow.merging.bank import reconstruct as reconstruct
    from mergeflow.merging.registry import method_names as method_names
    from mergeflow.merging.streaming import merge_files as merge_files
    from mergeflow.routing.routers import Router as Router
    from mergeflow.routing.served import Prediction as Prediction
    from mergeflow.statedict.task_vector_algebra import TaskVector as TaskVector


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'mergeflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
