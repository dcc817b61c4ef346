"""`mergeflow adapt`: AdaMerging / AdaRank on a user's own open_clip image-encoder checkpoints and unlabelled inputs.

The architecture comes from an open_clip model name (``--model``); the base and the experts are that model's image
encoder state dicts (a whole CLIP's ``visual.*`` entries are accepted too). Heads and inputs travel as safetensors
keyed by task name: ``--heads`` one (classes, D) tensor per task, ``--inputs`` one (N, 3, H, W) tensor of
preprocessed images per task. The final step's model is written atomically, as ``mergeflow merge`` writes a merge.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from mergeflow.errors import MergeflowError

if TYPE_CHECKING:
    import torch

_ParserT = TypeVar("_ParserT", bound=argparse.ArgumentParser)


def _methods_help() -> str:
    """The method list for ``adapt --help``, from the declarations (torch-free), so it never goes stale."""
    from mergeflow.declarations.adaptation import ADAPT_DECLARATIONS

    lines = ["methods (--method) and their declared hyperparameters (--prior, --rank, --common; unset = the default):"]
    for declaration in ADAPT_DECLARATIONS.values():
        lines.append(f"  {declaration.name}: {declaration.summary}")
        lines.extend(f"    {line.strip()}" for line in declaration.describe())
    return "\n".join(lines)


def _encoder_state(path: str) -> dict[str, torch.Tensor]:
    """An image encoder's state dict; a whole CLIP's file gives its ``visual.*`` entries."""
    from mergeflow.api import load_checkpoint
    from mergeflow.statedict.subdict import visual_state_dict

    state = load_checkpoint(path)
    return visual_state_dict(state) if any(key.startswith("visual.") for key in state) else state


def _per_task(path: str, tasks: list[str], what: str, shape: str) -> list[torch.Tensor]:
    from mergeflow.cli_inputs import read_keyed_tensors

    tensors = read_keyed_tensors(path, what, shape, tasks)
    return [tensors[task] for task in tasks]


def _cmd_adapt(args: argparse.Namespace) -> None:
    import torch

    from mergeflow.adaptation.batches import batch_sampler
    from mergeflow.api import adapt, save_checkpoint
    from mergeflow.cli_inputs import parse_experts
    from mergeflow.declarations.adaptation import adapt_declaration
    from mergeflow.models.backbone import create_clip
    from mergeflow.models.clip_parts import visual

    experts_paths = parse_experts(args.expert)
    if len(experts_paths) < 2:
        raise MergeflowError("adaptation merges at least two experts: give --expert NAME=PATH once per task")
    tasks = list(experts_paths)
    base = _encoder_state(args.base)
    experts: Mapping[str, Mapping[str, Any]] = {name: _encoder_state(path) for name, path in experts_paths.items()}
    heads = _per_task(args.heads, tasks, "head", "(classes, D)")
    pools = _per_task(args.inputs, tasks, "preprocessed images", "(N, 3, H, W)")
    encoder = visual(create_clip(args.model, pretrained=None, pretrained_text=False)).eval()
    expected = {key: tuple(value.shape) for key, value in encoder.state_dict().items()}
    if set(base) != set(expected):
        raise MergeflowError(f"{args.base}: its keys are not {args.model!r}'s image encoder's (missing "
                             f"{sorted(set(expected) - set(base))[:3]}, unexpected {sorted(set(base) - set(expected))[:3]}); pass --model")
    misfit = [key for key, shape in expected.items() if tuple(base[key].shape) != shape]
    if misfit:
        raise MergeflowError(f"{args.base}: {misfit[0]!r} has shape {tuple(base[misfit[0]].shape)} but {args.model!r}'s "
                             f"image encoder's is {expected[misfit[0]]} ({len(misfit)} such keys); pass --model")
    try:
        with torch.no_grad():
            width = encoder(pools[0][:1]).shape[-1]
    except RuntimeError as exc:
        raise MergeflowError(f"{args.inputs}: the inputs do not fit {args.model!r}'s image encoder ({exc}); "
                             "give images preprocessed to its input size") from exc
    wrong = [task for task, head in zip(tasks, heads, strict=True) if head.shape[1] != width]
    if wrong:
        raise MergeflowError(f"{args.heads}: the heads of {wrong} are not {width}-wide, the encoder's embedding width")
    result = adapt(args.method, base, experts, encoder, heads, batch_sampler(pools, args.batch_size, args.seed),
                   steps=args.steps, lr=args.lr, prior=args.prior, rank=args.rank, common=args.common)
    settings = adapt_declaration(args.method).resolve({"prior": args.prior, "rank": args.rank, "common": args.common}, none_is_unset=True)
    info = {"method": args.method, "steps": args.steps, "hyperparameters": settings, "lr": args.lr,
            "batch_size": args.batch_size, "seed": args.seed, "tasks": tasks,
            "first_loss": result.losses[0] if result.losses else None, "final_loss": result.losses[-1] if result.losses else None}
    save_checkpoint(result.state, args.out, {"method": args.method, "info": json.dumps(info, sort_keys=True)})
    summary = f", entropy {result.losses[0]:.4f} -> {result.losses[-1]:.4f}" if result.losses else ""
    print(f"wrote {args.out}: {args.method} after {args.steps} steps over {len(tasks)} experts{summary}")


def add_adapt_command(sub: argparse._SubParsersAction[_ParserT]) -> None:
    """Register ``adapt`` under the ``mergeflow`` parser's subcommands."""
    adapt = sub.add_parser(
        "adapt", help="AdaMerging / AdaRank: test-time adaptation of a merge on unlabelled inputs, on your checkpoints",
        description=__doc__ + "\nexample: mergeflow adapt --method adarank_ta --model ViT-B-32 --base base.safetensors \\\n"
        "           --expert cars=cars.safetensors --expert dtd=dtd.safetensors --heads heads.safetensors \\\n"
        "           --inputs unlabelled.safetensors --steps 500 --prior 0.3 --out adapted.safetensors",
        epilog=_methods_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    adapt.add_argument("--method", required=True, metavar="NAME", help="an adaptation method (listed below)")
    adapt.add_argument("--model", required=True, metavar="OPEN_CLIP_NAME",
                       help="the open_clip architecture of the checkpoints (e.g. ViT-B-32, or mergeflow's mf-vit-minilm)")
    adapt.add_argument("--base", required=True, metavar="BASE.safetensors", help="theta_0's image encoder (or a whole CLIP)")
    adapt.add_argument("--expert", required=True, action="append", default=[], metavar="NAME=PATH",
                       help="one fine-tuned image encoder and its task name; repeat for every expert")
    adapt.add_argument("--heads", required=True, metavar="HEADS.safetensors", help="one (classes, D) frozen head per task name")
    adapt.add_argument("--inputs", required=True, metavar="INPUTS.safetensors",
                       help="one (N, 3, H, W) tensor of preprocessed unlabelled images per task name")
    adapt.add_argument("--out", required=True, metavar="OUT.safetensors", help="where to write the final step's model")
    adapt.add_argument("--steps", type=int, default=500, help="Adam steps; the final one is written [500]")
    adapt.add_argument("--prior", type=float, default=None,
                       help="initial coefficient, the static method's scale [the method's declared default: docs/methods.md §3, §11]")
    adapt.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate [1e-3]")
    adapt.add_argument("--rank", type=float, default=None,
                       help="AdaRank-TA / -CART: rank fraction kept at step 0; AdaRank-TSV-M: per-task rank fraction [declared default]")
    adapt.add_argument("--common", type=float, default=None, help="AdaRank-Iso-CTS: common-subspace fraction [declared default]")
    adapt.add_argument("--batch-size", type=int, default=16, help="unlabelled inputs per task per step [16]")
    adapt.add_argument("--seed", type=int, default=0, help="seed of the batch draws [0]")
    adapt.set_defaults(func=_cmd_adapt)
