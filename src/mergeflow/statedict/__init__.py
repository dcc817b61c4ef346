"""State dicts on disk and in memory: safetensors I/O with validation, and task-vector arithmetic."""
