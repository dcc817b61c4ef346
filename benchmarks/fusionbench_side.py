"""FusionBench's side of ``merge_bench.py --against fusionbench``: one method, FusionBench's own code, one process.

Run by FusionBench's interpreter, never mergeflow's (this file imports nothing from mergeflow), so the two tools'
dependencies never meet. It loads the base and every expert whole with ``safetensors.torch.load_file`` (what
FusionBench's model loaders end in), wraps each state dict in FusionBench's ``ParameterDictModel``, puts them in a
``BaseModelPool`` ("_pretrained_" + one name per expert) and calls the method's own ``run(modelpool)``; nothing of
a method is reimplemented here. Hyperparameters are passed in mergeflow's names and mapped to FusionBench's:

    task_arithmetic  TaskArithmeticAlgorithm(scaling_factor=scale)
    ties             TiesMergingAlgorithm(scaling_factor=scale, threshold=k, merge_func=aggregate, remove_keys=[])
    tall_ta          TallMaskTaskArithmeticAlgorithm(tall_mask_lambda=lam)          -> one model per task
    emr              EMRMerging()                                                    -> unified vector, masks, rescalers
    tsv_m            TaskSingularVectorMerging(alpha=scale, exclude_keys=[])
    iso_c            IsotropicMergingInCommonSubspace(scaling_factor=scale, exclude_keys=[])
    iso_cts          IsotropicMergingInCommonAndTaskSubspace(scaling_factor=scale, common_space_fraction=common)

The output (``--out``, safetensors) is what the method returns: the merged state dict (keys unchanged); for
tall_ta ``<task>/<key>`` per task (TALL's run returns one retrieved model per task); for emr ``merged/<key>``,
``mask/<task>/<key>`` (bool) and ``rescalers`` (float32, in expert order). It prints one JSON line with the
seconds spent loading, merging and saving.

Usage (by merge_bench.py; by hand the same)::

    /tmp/fbvenv/bin/python benchmarks/fusionbench_side.py --method ties --base base.safetensors \
        --expert task0=expert_0.safetensors --expert task1=expert_1.safetensors --out fb_ties.safetensors \
        --set k=0.2 --set aggregate=mean --set scale=1.0
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

METHODS = ("task_arithmetic", "ties", "tall_ta", "emr", "tsv_m", "iso_c", "iso_cts")


def build_algorithm(method: str, settings: dict[str, Any]) -> Any:
    """FusionBench's algorithm object for ``method``, its hyperparameters taken from mergeflow's names."""
    if method == "task_arithmetic":
        from fusion_bench.method.task_arithmetic.task_arithmetic import TaskArithmeticAlgorithm

        return TaskArithmeticAlgorithm(scaling_factor=float(settings["scale"]))
    if method == "ties":
        from fusion_bench.method.ties_merging.ties_merging import TiesMergingAlgorithm

        return TiesMergingAlgorithm(
            scaling_factor=float(settings["scale"]), threshold=float(settings["k"]), remove_keys=[],
            merge_func=str(settings["aggregate"]),
        )
    if method == "tall_ta":
        from fusion_bench.method.tall_mask.task_arithmetic import TallMaskTaskArithmeticAlgorithm

        return TallMaskTaskArithmeticAlgorithm(tall_mask_lambda=float(settings["lam"]))
    if method == "emr":
        from fusion_bench.method.emr_merging.emr_merging import EMRMerging

        return EMRMerging()
    if method == "tsv_m":
        from fusion_bench.method.task_singular_vector.TSVM import TaskSingularVectorMerging

        if settings.get("rank") not in (None, "none"):
            raise SystemExit("FusionBench's TSV-M has no rank option (it always keeps int(r / T) per task)")
        return TaskSingularVectorMerging(alpha=float(settings["scale"]), exclude_keys=[])
    if method == "iso_c":
        from fusion_bench.method.isotropic_merging.iso import IsotropicMergingInCommonSubspace

        return IsotropicMergingInCommonSubspace(scaling_factor=float(settings["scale"]), exclude_keys=[])
    if method == "iso_cts":
        from fusion_bench.method.isotropic_merging.iso import IsotropicMergingInCommonAndTaskSubspace

        return IsotropicMergingInCommonAndTaskSubspace(
            scaling_factor=float(settings["scale"]), common_space_fraction=float(settings["common"]), exclude_keys=[]
        )
    raise SystemExit(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def output_tensors(method: str, result: Any, names: list[str]) -> dict[str, Any]:
    """The tensors to save from what ``run`` returned (a model, TALL's {"models": ...}, or EMR's modulated model)."""
    import torch

    def plain(state: dict[str, Any]) -> dict[str, Any]:
        return {key: value.detach().contiguous() for key, value in state.items()}

    if method == "tall_ta":
        return {f"{name}/{key}": value for name in names for key, value in plain(result["models"][name].state_dict()).items()}
    if method == "emr":
        unified = result.unified_task_vector
        out = {f"merged/{key}": unified[key].detach().contiguous() for key in unified.keys()}
        rescalers = []
        for name in names:
            modulator = result.modulators[name]
            out.update({f"mask/{name}/{key}": modulator.mask[key].detach().contiguous() for key in modulator.mask.keys()})
            rescalers.append(float(modulator.rescaler))
        out["rescalers"] = torch.tensor(rescalers, dtype=torch.float32)
        return out
    return plain(result.state_dict())


def parse_pair(text: str) -> tuple[str, str]:
    """NAME=VALUE (as mergeflow's CLI takes --expert and --set)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--base", required=True)
    parser.add_argument("--expert", type=parse_pair, action="append", required=True, help="NAME=PATH, repeatable")
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", type=parse_pair, action="append", default=[], help="KEY=VALUE in mergeflow's names")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's, i.e. OMP_NUM_THREADS)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch
    from fusion_bench.modelpool import BaseModelPool
    from fusion_bench.models.parameter_dict import ParameterDictModel
    from safetensors.torch import load_file, save_file

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    algorithm = build_algorithm(args.method, dict(args.set))
    names = [name for name, _ in args.expert]
    start = time.perf_counter()

    # FusionBench's TALL run fails on nn.Parameter weights (state_dict(keep_vars=True) yields Parameters, its task
    # vectors are Tensors, and state_dict_arithmetic refuses the type mismatch), so for tall_ta the weights are buffers.
    wrap = torch.nn.Buffer if args.method == "tall_ta" else lambda value: torch.nn.Parameter(value, requires_grad=False)

    def model(path: str) -> Any:
        """A checkpoint as FusionBench's ParameterDictModel (it takes Parameters or Buffers; wrapping copies nothing)."""
        return ParameterDictModel({key: wrap(value) for key, value in load_file(path).items()})

    models = {"_pretrained_": model(args.base)}
    for name, path in args.expert:
        models[name] = model(path)
    pool = BaseModelPool(models)
    loaded = time.perf_counter()
    result = algorithm.run(pool)
    merged = time.perf_counter()
    save_file(output_tensors(args.method, result, names), args.out)
    saved = time.perf_counter()
    print(json.dumps({"load": loaded - start, "merge": merged - loaded, "save": saved - merged,
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
