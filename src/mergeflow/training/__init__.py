"""Training loops: contrastive pretraining of the built-in backbone and expert fine-tuning."""
