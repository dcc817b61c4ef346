"""One MiniLM-L6 load (about a second) shared by every text test; tests that train work on a deep copy."""

from __future__ import annotations

import pytest

from mergeflow.models.text_encoder import TextEncoder, load_text_encoder


@pytest.fixture(scope="session")
def minilm() -> tuple[TextEncoder, object]:
    """(pretrained TextEncoder in eval mode, tokenizer), loaded from the installed package with the hub switched off."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        return load_text_encoder()
