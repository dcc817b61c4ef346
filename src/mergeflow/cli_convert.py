"""`mergeflow convert-checkpoint`: a public checkpoint, once, into a safetensors file mergeflow reads.

The input is a ``.pt`` state dict (TALL masks), a ``.pt`` pickled module (task_vectors: unpickled only with
``--trust-pickle``, since unpickling runs code from the file), a ``.safetensors`` file, or a folder written by Hugging
Face ``save_pretrained``. ``--vision`` keeps the CLIP image tower in open_clip ``visual.*`` keys (a folder always gives
that); without it the tensors are written as stored (e.g. a classification head's ``weight`` and ``bias``). A
``CLIPVisionModel`` has no projection: ``--projection-from BASE`` takes its base ``CLIPModel``'s. The output is written
atomically: on any error nothing is left behind (exit status 2, one line).
"""

from __future__ import annotations

import argparse
import os
from typing import TypeVar

from mergeflow.errors import MergeflowError

_ParserT = TypeVar("_ParserT", bound=argparse.ArgumentParser)


def _cmd_convert(args: argparse.Namespace) -> None:
    from mergeflow.checkpoints.open_clip_files import (
        open_clip_vision_state,
        read_checkpoint,
        read_torch_state_dict,
    )
    from mergeflow.statedict.io import save_tensors

    source, out = args.source, args.out
    if os.path.exists(out) and os.path.exists(source) and os.path.samefile(source, out):
        raise MergeflowError(f"OUT {out} is the input; choose another path")
    if args.projection_from is not None and not os.path.isdir(source):
        raise MergeflowError("--projection-from is for a Hugging Face CLIPVisionModel folder (IN), which has no projection")
    if os.path.isdir(source):
        from mergeflow.checkpoints.hf_clip import hf_clip_vision_state, hf_projection, load_hf_clip

        projection = None if args.projection_from is None else hf_projection(load_hf_clip(args.projection_from))
        tensors, layout = hf_clip_vision_state(source, projection), "open_clip vision tower"
    else:
        # a plain state dict is read without unpickling, flag or not
        tensors = read_checkpoint(source) if str(source).endswith(".safetensors") else read_torch_state_dict(source, args.trust_pickle)
        layout = "as stored"
        if args.vision:
            tensors, layout = open_clip_vision_state(tensors, str(source)), "open_clip vision tower"
    try:
        save_tensors(out, tensors, metadata={"converted_from": os.path.basename(os.path.normpath(source)), "layout": layout})
    except OSError as exc:
        raise MergeflowError(f"cannot write {out}: {exc}") from exc
    print(f"wrote {out}: {len(tensors)} tensors ({layout}) from {source}")


def add_convert_command(sub: argparse._SubParsersAction[_ParserT]) -> None:
    """Register ``convert-checkpoint`` under the ``mergeflow`` parser's subcommands."""
    convert = sub.add_parser(
        "convert-checkpoint", help="convert a public checkpoint (.pt state dict or pickled module, HF folder) to safetensors",
        description=__doc__ + "\nexamples: mergeflow convert-checkpoint tall/ViT-B-32/CarsVal/nonlinear_finetuned.pt cars.safetensors --vision\n"
        "          mergeflow convert-checkpoint task_vectors/Cars/finetuned.pt cars.safetensors --trust-pickle --vision\n"
        "          mergeflow convert-checkpoint clip-vit-base-patch32_cars/ cars.safetensors --projection-from clip-vit-base-patch32/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    convert.add_argument("source", metavar="IN", help="a .pt, a .safetensors file, or a save_pretrained folder")
    convert.add_argument("out", metavar="OUT.safetensors", help="where to write the tensors")
    convert.add_argument("--trust-pickle", action="store_true",
                         help="unpickle IN if it is a pickled object (runs code from the file: only for files you trust)")
    convert.add_argument("--vision", action="store_true",
                         help="keep only the CLIP image tower, in open_clip `visual.*` keys (drops `model.` and the text tower)")
    convert.add_argument("--projection-from", metavar="BASE",
                         help="a CLIPModel folder (or hub id) whose visual projection a CLIPVisionModel IN lacks, e.g. "
                         "FusionBench experts' base openai/clip-vit-base-patch32; without it such a tower has no `visual.proj`")
    convert.set_defaults(func=_cmd_convert)
