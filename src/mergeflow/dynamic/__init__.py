"""Per-input merged models that are trained (WEMoE's routers, MoW-Merging's gate): each input gets its own weights."""
