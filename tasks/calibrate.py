"""Stage calibrate: fit every router of ``route.routers`` on N training inputs per task (features of
``route.feature_model``) and set each one's reject threshold on the validation split. Reads cached features: no
model runs here, so the routers share one stage (each fit takes milliseconds; a stage's start-up, seconds). Their
parameters are shared too, so a change reruns every router either way."""

from __future__ import annotations

import argparse

from mergeflow.params import Params
from mergeflow.routing.calibration import calibrate
from mergeflow.routing.router_file import save_router
from tasks._paths import router_path
from tasks._routing_inputs import load_features
from tasks._stage import run_stage


def build(args: argparse.Namespace, params: Params) -> None:
    route, tasks = params.route, params.suite.tasks
    features = load_features(params, route.feature_model)
    validation = [features["val"][t] for t in tasks]
    for name in route.routers:
        fitted = calibrate(
            name, tasks, [features["train"][t] for t in tasks], validation,
            samples=route.samples, eps=route.eps, seed=route.seed, quantile=route.reject.quantile,
        )
        info = {
            "feature_model": route.feature_model, "normalize": route.normalize, "samples": route.samples,
            "eps": route.eps, "seed": route.seed, "reject_quantile": route.reject.quantile,
            "reject_threshold": fitted.reject_threshold,
        }
        save_router(router_path(name), fitted.router, info)
        right = sum(int((fitted.router.route(x) == index).sum()) for index, x in enumerate(validation))
        total = sum(len(x) for x in validation)
        print(f"calibrate {name}: {route.samples} samples/task from {route.feature_model}; validation routing accuracy "
              f"{right / total:.4f}; reject threshold {fitted.reject_threshold:.4g} (q={route.reject.quantile})")


if __name__ == "__main__":
    run_stage("calibrate", "Fit every router of route.routers on N calibration samples per task; set reject thresholds.",
              build)
