"""Task routing for inputs of unknown task: fit per-task feature statistics, pick a task per input, run it (MAD)."""
