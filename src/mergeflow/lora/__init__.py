"""LoRA experts: per-input mixing of low-rank adapters without materialising per-input weights."""
