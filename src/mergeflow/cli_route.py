"""`mergeflow route fit` and `mergeflow route predict`: task routing on a user's own features, no pipeline needed.

Features travel as safetensors with one (N, D) floating-point tensor per key. For ``fit`` the keys are the task
names (each tensor holds that task's calibration features); for ``predict`` the keys are any names (each tensor's
rows are routed). Outputs are written atomically: on an error nothing is left behind (exit status 2, one line).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

from mergeflow.declarations.routing import ROUTERS
from mergeflow.errors import MergeflowError

if TYPE_CHECKING:
    import torch

_ParserT = TypeVar("_ParserT", bound=argparse.ArgumentParser)
ROUTER_NAMES_HELP = "; ".join(f"{name}: {what}" for name, what in ROUTERS.items())


def _read_features(path: str, what: str) -> Mapping[str, torch.Tensor]:
    from mergeflow.cli_inputs import read_keyed_tensors

    tensors = read_keyed_tensors(path, what, "(N, D)")
    widths = {int(value.shape[1]) for value in tensors.values()}
    if len(widths) > 1:
        raise MergeflowError(f"{path}: the tensors have different widths {sorted(widths)}; all features must share D")
    return tensors


def _cmd_fit(args: argparse.Namespace) -> None:
    from mergeflow.api import fit_task_router, save_router

    features = _read_features(args.features, "one task's calibration features (key = task name)")
    if len(features) < 2:
        raise MergeflowError(f"{args.features}: routing needs at least two tasks, got {list(features)}")
    if args.samples is not None:
        from mergeflow.routing.calibration import draw_calibration

        drawn = draw_calibration(list(features.values()), list(features), args.samples, args.seed)
        features = dict(zip(features, drawn, strict=True))
    router = fit_task_router(args.router, features, args.eps)
    info = {"features": args.features, "samples": args.samples, "seed": args.seed, "eps": args.eps,
            "counts": {task: int(value.shape[0]) for task, value in features.items()}}
    save_router(router, args.out, info)
    print(f"wrote {args.out}: {args.router} router over {len(router.tasks)} tasks ({', '.join(router.tasks)})")


def _cmd_predict(args: argparse.Namespace) -> None:
    import pandas as pd

    from mergeflow.api import load_router
    from mergeflow.atomic import atomic_path

    router = load_router(args.router)
    features = _read_features(args.features, "inputs to route")
    rows = []
    for key, value in features.items():
        routed, distance = router.route(value), router.min_distance(value)  # both check the width
        rows.append(pd.DataFrame({"key": key, "row": range(value.shape[0]), "task": [router.tasks[i] for i in routed.tolist()],
                                  "task_index": routed.numpy(), "min_distance": distance.numpy()}))
    table = pd.concat(rows, ignore_index=True)
    with atomic_path(args.out) as tmp:
        table.to_parquet(tmp, index=False)
    counts = table["task"].value_counts().reindex(router.tasks, fill_value=0)
    print(f"wrote {args.out}: {len(table)} inputs routed " + json.dumps({task: int(n) for task, n in counts.items()}))


def _subcommand(commands: argparse._SubParsersAction[_ParserT], name: str, summary: str, description: str) -> _ParserT:
    return commands.add_parser(name, help=summary, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_route_commands(sub: argparse._SubParsersAction[_ParserT]) -> None:
    """Register ``route fit`` and ``route predict`` under the ``mergeflow`` parser's subcommands."""
    route = sub.add_parser("route", help="fit a task router on features and route new inputs (MAD and the others)",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = route.add_subparsers(dest="route_command", required=True, parser_class=type(route))
    fit = _subcommand(
        commands, "fit", "features per task -> a router file",
        "Fit a router on per-task features (one (N_t, D) tensor per task name) and write it as\n"
        "safetensors (its name, tasks and how it was fitted in the metadata).\n\n"
        "example: mergeflow route fit --router mad --features calibration.safetensors --out mad.safetensors")
    fit.add_argument("--router", default="mad", metavar="NAME", help=f"router: {ROUTER_NAMES_HELP} [mad]")
    fit.add_argument("--features", required=True, metavar="FEATURES.safetensors", help="one (N, D) tensor per task name")
    fit.add_argument("--out", required=True, metavar="ROUTER.safetensors", help="where to write the router")
    fit.add_argument("--eps", type=float, default=1e-4, help="ridge added to every covariance diagonal [1e-4]")
    fit.add_argument("--samples", type=int, default=None, metavar="N",
                     help="fit on N rows per task drawn with --seed, as the pipeline's calibrate does [all rows]")
    fit.add_argument("--seed", type=int, default=0, help="seed of the --samples draw [0]")
    fit.set_defaults(func=_cmd_fit)
    predict = _subcommand(
        commands, "predict", "a router file + features -> the routed task of every input (Parquet)",
        "Route every row of every tensor in FEATURES with a router file; write one Parquet row per\n"
        "input: key, row, task, task_index, min_distance (the reject option's distance).\n\n"
        "example: mergeflow route predict --router mad.safetensors --features inputs.safetensors --out routed.parquet")
    predict.add_argument("--router", required=True, metavar="ROUTER.safetensors", help="written by `route fit` or the pipeline")
    predict.add_argument("--features", required=True, metavar="FEATURES.safetensors", help="(N, D) tensors of inputs to route")
    predict.add_argument("--out", required=True, metavar="ROUTED.parquet", help="where to write the routed tasks")
    predict.set_defaults(func=_cmd_predict)
