"""Which kind of checkpoint a params string names, torch-free: a Hugging Face CLIP (folder or hub id) or a file.

``backbone.pretrained`` and ``finetune.<task>.checkpoint`` name a Hugging Face CLIP by ``hf:<hub id or folder>``, or
by a local folder written by ``save_pretrained`` (it holds ``config.json``); anything else is what it was before (an
open_clip tag, a packaged backbone, a file).
"""

from __future__ import annotations

from pathlib import Path

HF_PREFIX = "hf:"


def hf_clip_source(name: str | None) -> str | None:
    """The hub id or folder ``from_pretrained`` gets, when ``name`` names a Hugging Face CLIP; else None."""
    if name is None:
        return None
    if name.startswith(HF_PREFIX):
        return name.removeprefix(HF_PREFIX)
    path = Path(name).expanduser()
    return str(path) if path.is_dir() and (path / "config.json").is_file() else None
