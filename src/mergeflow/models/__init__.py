"""Backbones (open_clip image/text towers, Hugging Face text encoders), frozen classification heads, and the classifiers that join them."""
