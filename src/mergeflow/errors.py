"""One exception type for every error a user can fix, so stages and the CLI print one readable line."""


class MergeflowError(Exception):
    """A problem with the user's input (params, files, checkpoints) that the message explains how to fix."""
