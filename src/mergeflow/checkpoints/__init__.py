"""Public CLIP checkpoints in the layouts they are published in (open_clip state dicts, Hugging Face folders), read
without unpickling and mapped to one canonical layout: open_clip's ``visual.*`` keys."""
