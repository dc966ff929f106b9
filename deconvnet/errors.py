"""The package's own exception: a user-facing mistake the CLI reports in one line."""


class DeconvError(ValueError):
    """A bad request (unknown layer, channel out of range, unsupported layer type...).

    The message says what was expected, what was received, and how to fix it.
    It subclasses ValueError so callers that catch ValueError keep working.
    """
