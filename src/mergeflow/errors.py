"""One exception type for every error a user can fix, so stages and the CLI print one readable line."""

import errno


class MergeflowError(Exception):
    """A problem with the user's input (params, files, checkpoints) that the message explains how to fix."""


# errno -> what the user can do about it, for the errors a resource limit or a full disk raises mid-write
_OS_HINTS = {
    errno.EFBIG: "the process's file-size limit, ulimit -f, is below the output's size",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
}


def describe_os_error(exc: OSError) -> str:
    """One readable line for an OSError: the file it names, the system's words, and a hint for the limits above."""
    where = f"{exc.filename}: " if exc.filename else ""
    hint = f" ({_OS_HINTS[exc.errno]})" if exc.errno in _OS_HINTS else ""
    return f"{where}{exc.strerror or exc}{hint}"


def hits_a_limit(exc: OSError) -> bool:
    """Whether a write failed on a resource limit (file size, disk space, quota): the user's to fix, not a bug."""
    return exc.errno in _OS_HINTS
