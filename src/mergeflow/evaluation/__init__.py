"""Scoring models and the long-format results table every evaluation stage appends to."""
