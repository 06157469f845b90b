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


def check_attribute_columns(attributes: list[str], datamodule: object) -> None:
    """The model's attribute list must be the data's columns, in order (when the data says)."""
    names = getattr(datamodule, "attribute_names", None)
    if names is not None and list(names) != list(attributes):
        raise ConfigError(
            f"model.attributes {list(attributes)} do not match the data's columns {list(names)}; "
            "set the same list (in the same order) for model and data"
        )
