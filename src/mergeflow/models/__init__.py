"""Backbones (open_clip image/text towers), frozen classification heads, and the classifier that joins them."""
