"""Ship a backbone trained by the recipe: copy its image tower into src/mergeflow/models/weights/ and print its sha256.

Usage (after the recipe has run, e.g. in a scratch copy whose params.yaml is
`python -m mergeflow.profiles profiles/backbone.yaml params.yaml`, or with `python -m tasks.pretrain --params profiles/backbone.yaml`):
    python scripts/package_backbone.py RUN_DIR/artifacts/base/clip.safetensors --name mf-vit-minilm-v1
Then record the printed sha256 in src/mergeflow/models/packaged.py and in the model card beside the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mergeflow.errors import MergeflowError
from mergeflow.models.backbone import load_clip
from mergeflow.models.packaged import WEIGHTS_DIR, file_sha256, shipped_tensors
from mergeflow.statedict.io import read_safetensors, save_tensors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=Path, help="the recipe's artifacts/base/clip.safetensors")
    parser.add_argument("--name", required=True, help="the packaged name, used as mergeflow:NAME in params.yaml")
    args = parser.parse_args()
    try:
        model_name = read_safetensors(args.base)[1].get("open_clip_model")
        if not model_name:
            raise MergeflowError(f"{args.base}: no open_clip model name in its metadata; is it a pretrain output?")
        tensors = shipped_tensors(load_clip(args.base, model_name))
    except MergeflowError as exc:
        print(f"package_backbone: {exc}", file=sys.stderr)
        return 2
    target = WEIGHTS_DIR / f"{args.name}.safetensors"
    save_tensors(target, tensors, metadata={"open_clip_model": model_name, "packaged_name": args.name})
    size = target.stat().st_size
    print(f"{target}: {len(tensors)} tensors, {size / 1e6:.2f} MB, sha256 {file_sha256(target)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
