"""Errors that reach the user as one line.

Everything the user can get wrong (a path, a file's format, a config field) raises a
subclass of :class:`LatentNavError` whose message names the file or field and says what
was expected. ``train.py`` prints such errors as a single line instead of a traceback.
"""


class LatentNavError(Exception):
    """Base class: a problem with the user's input, reported as one line."""


class DataFormatError(LatentNavError, ValueError):
    """A data file or folder is missing or not in the expected format."""


class ConfigError(LatentNavError, ValueError):
    """A configuration value is invalid or inconsistent with another."""


class TrainingDivergedError(LatentNavError, FloatingPointError):
    """A loss became NaN or infinite."""
