"""Exceptions for mistakes a user can fix: the CLI prints them as one line, never a traceback."""


class BamrecError(Exception):
    """A user-facing error: the message says what went wrong and what to do about it."""


class DataError(BamrecError):
    """Malformed, missing or unsuitable input data."""


class ConfigError(BamrecError):
    """An unknown or invalid option value."""


class RunDirError(BamrecError):
    """A run directory or checkpoint that cannot be used as asked."""


class UnknownIdError(DataError):
    """A user or item id that the run's dataset or item map does not hold."""


class TooLargeError(BamrecError):
    """A request beyond a configured size limit (history length, batch size)."""
