"""The package's own exceptions: a user-facing mistake, and a failed write, each reported in one line."""

import errno


class DeconvError(ValueError):
    """A bad request (unknown layer, channel out of range, unsupported layer type...).

    The message says what was expected, what was received, and how to fix it.
    It subclasses ValueError so callers that catch ValueError keep working.
    """


class WriteError(OSError):
    """Writing an output file failed in the operating system (disk full, I/O error, quota...).

    Not a mistake in the request: the CLI reports it with exit status 1, apart from bad input (2).
    ``filename`` is the file that could not be written; ``errno`` and ``strerror`` are the OS error's.
    """

    def __init__(self, path: object, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))

    def __str__(self) -> str:
        code = errno.errorcode.get(self.errno, f"errno {self.errno}") if self.errno is not None else "no errno"
        advice = ("free some space or choose another output folder, then re-run the same command"
                  if self.errno in (errno.ENOSPC, errno.EDQUOT) else "re-run the same command once it is fixed")
        return f"could not write {self.filename}: {self.strerror} ({code}); {advice}"


EXIT_FAILED = 1  # the work could not be done: a file could not be written or read (disk full, I/O error)
EXIT_USAGE = 2  # bad input: the command, its options, or the files it names
# OS errors about what the user asked for (a missing file, a folder that is a file...), as opposed to
# failures of the machine while doing it (a full disk, an I/O error).
_INPUT_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EEXIST,
                 errno.ENAMETOOLONG, errno.ELOOP, errno.EROFS, errno.EINVAL}


def exit_status(error: BaseException) -> int:
    """The ``deconv`` exit status for ``error``: 2 for a mistake in the request, 1 for a failure of the machine.

    Classified by type and errno, never by message: a WriteError (fileio's atomic writers) or an
    OSError whose errno is not about the request (ENOSPC, EIO...) is a failure; a DeconvError, an
    OSError raised about a path without an errno, or one about a missing or unusable path is bad input.
    An error that carries its own ``exit_status`` (another process's failure under torchrun) keeps it.
    """
    status = getattr(error, "exit_status", None)
    if isinstance(status, int):
        return status
    if isinstance(error, WriteError):
        return EXIT_FAILED
    if isinstance(error, OSError) and error.errno is not None and error.errno not in _INPUT_ERRNOS:
        return EXIT_FAILED
    return EXIT_USAGE
