"""The trained per-input methods' results-table names, method -> (method, router) (torch-free: the report reads it;
the methods themselves are declared in dynamic/methods.py, which takes its names from here)."""

from __future__ import annotations

TABLE_NAMES: dict[str, tuple[str, str]] = {
    "wemoe": ("wemoe", "wemoe"),
    "mow_merging": ("mow_merging", "mow"),
}
