"""Real language experts: Hugging Face sequence classifiers (RoBERTa, GPT-2) with per-task heads, causal LMs scored by
label-word log-likelihood, and peft LoRA experts merged by Task Arithmetic (the GLUE tasks themselves are data:
mergeflow.data.sources.glue)."""
