"""Real language experts: Hugging Face sequence classifiers (RoBERTa, GPT-2) with per-task heads, causal LMs scored by
label-word log-likelihood, peft LoRA experts merged by Task Arithmetic, and the seven GLUE tasks as data."""
