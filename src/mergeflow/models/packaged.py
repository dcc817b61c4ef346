"""Backbones the project pretrains once with its own recipe and ships inside the package (``mergeflow:<name>``).

Only what the recipe trains is shipped (the image tower and the logit scale); the locked text tower comes from the
package that ships it (MiniLM). A file is checked against its recorded sha256 before it is used, so a corrupted or
swapped file stops the stage instead of silently changing every result. Each file has a model card beside it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mergeflow.errors import MergeflowError

if TYPE_CHECKING:
    import torch
    from torch import nn

WEIGHTS_DIR = Path(__file__).parent / "weights"
REFERENCE_PREFIX = "mergeflow:"
SHIPPED_PREFIXES = ("visual.", "logit_scale")


@dataclass(frozen=True)
class PackagedBackbone:
    """One shipped backbone: its open_clip config name, its file inside the package and the file's sha256."""

    name: str
    model: str
    sha256: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.safetensors"

    @property
    def card(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.md"


PACKAGED: dict[str, PackagedBackbone] = {
    spec.name: spec
    for spec in (
        PackagedBackbone(name="mf-vit-minilm-v1", model="mf-vit-minilm", sha256="ef981017093a819af1eeefb19c25a7f9bc3db1f9e422dd4a0ddb895498b3f4d2"),
    )
}


def is_packaged(reference: str | None) -> bool:
    """Whether ``backbone.pretrained`` names a shipped backbone (``mergeflow:<name>``)."""
    return reference is not None and reference.startswith(REFERENCE_PREFIX)


def packaged_backbone(reference: str, model_name: str) -> PackagedBackbone:
    """The shipped backbone ``reference`` names, checked against ``backbone.model``."""
    name = reference.removeprefix(REFERENCE_PREFIX)
    if name not in PACKAGED:
        raise MergeflowError(f"backbone.pretrained: unknown packaged backbone {reference!r}; known: "
                             + ", ".join(REFERENCE_PREFIX + known for known in PACKAGED))
    spec = PACKAGED[name]
    if spec.model != model_name:
        raise MergeflowError(f"backbone.pretrained: {reference!r} is a {spec.model!r} model but backbone.model is {model_name!r}")
    return spec


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_packaged_clip(reference: str, model_name: str) -> nn.Module:
    """Build the open_clip model and put the shipped, hash-checked image-tower weights into it."""
    from mergeflow.models.backbone import create_clip
    from mergeflow.statedict.io import read_safetensors

    spec = packaged_backbone(reference, model_name)
    if not spec.path.exists():
        raise MergeflowError(f"{spec.path}: the packaged backbone {reference!r} is missing; reinstall mergeflow")
    actual = file_sha256(spec.path)
    if actual != spec.sha256:
        raise MergeflowError(f"{spec.path}: sha256 {actual} differs from the recorded {spec.sha256}; the file is corrupted "
                             "or was replaced. Reinstall mergeflow, or rebuild it with the recipe in its model card.")
    tensors, _ = read_safetensors(spec.path)
    clip = create_clip(model_name, pretrained=None)
    state = clip.state_dict()
    expected = {key for key in state if key.startswith(SHIPPED_PREFIXES)}
    if set(tensors) != expected:
        raise MergeflowError(f"{spec.path}: its keys do not fit {model_name!r}'s image tower")
    clip.load_state_dict({**state, **tensors})
    return clip


def shipped_tensors(clip: nn.Module) -> dict[str, torch.Tensor]:
    """The entries of a trained CLIP that a packaged backbone ships (image tower and logit scale)."""
    return {key: value.detach().contiguous() for key, value in clip.state_dict().items() if key.startswith(SHIPPED_PREFIXES)}
