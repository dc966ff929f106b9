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
