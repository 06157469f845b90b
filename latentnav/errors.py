"""Errors that reach the user as one line.

Everything the user can get wrong (a path, a file's format, a config field) raises a
subclass of :class:`LatentNavError` whose message names the file or field and says what
was expected. ``train.py`` prints such errors as a single line instead of a traceback.
"""

from __future__ import annotations

import re
import sys
from typing import Callable, Optional


class LatentNavError(Exception):
    """Base class: a problem with the user's input, reported as one line."""


class DataFormatError(LatentNavError, ValueError):
    """A data file or folder is missing or not in the expected format."""


class ConfigError(LatentNavError, ValueError):
    """A configuration value is invalid or inconsistent with another."""


class OutputWriteError(LatentNavError, OSError):
    """An output could not be written (a full disk, a quota, a read-only folder); the message names the path."""


class NonFiniteOutput(LatentNavError, FloatingPointError):
    """A generator rendered NaN or inf for some latents (named by their indices)."""


class TrainingDivergedError(LatentNavError, FloatingPointError):
    """A loss became NaN or infinite, or ran away (see ``callbacks/divergence_guard.py``)."""


def check_count(field: str, value, minimum: int = 0) -> None:
    """``value`` must be a whole number >= ``minimum``; one line naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{field}: expected a whole number >= {minimum}, got {value!r}")


def check_positive(field: str, value, allow_none: bool = False) -> None:
    """``value`` must be a positive number (an int where an int is meant); one line naming ``field``."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise ConfigError(f"{field}: expected a positive number, got {value!r}")


# Adam's step is lr / (1 - beta1^t), computed in float32: beyond ~3e37 it overflows inside the
# optimiser. Anything near this bound is a typo, not a setting.
MAX_LEARNING_RATE = 1e30


def check_learning_rate(field: str, value) -> None:
    """A learning rate is finite, positive and below :data:`MAX_LEARNING_RATE`."""
    check_positive(field, value)
    if not value < MAX_LEARNING_RATE:
        raise ConfigError(f"{field}: {value!r} is out of range (expected a positive number below {MAX_LEARNING_RATE:g})")


def check_attribute_columns(attributes: list[str], datamodule: object) -> None:
    """The model's attribute list must be the data's columns, in order (when the data says)."""
    names = getattr(datamodule, "attribute_names", None)
    if names is not None and list(names) != list(attributes):
        raise ConfigError(
            f"model.attributes {list(attributes)} do not match the data's columns {list(names)}; "
            "set the same list (in the same order) for model and data"
        )


def user_error(exc: BaseException) -> Optional[LatentNavError]:
    """The LatentNavError behind ``exc``, if any: jsonargparse wraps errors raised while
    it builds the model and data, and DataLoader workers re-raise them with a traceback."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, LatentNavError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def one_line(error: LatentNavError) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(error).__name__
    last = re.match(r"^[\w.]*Error: (.*)$", lines[-1].strip())  # a worker's re-raised traceback
    return last.group(1) if last else lines[-1].strip()


def _lightning_refusal(exc: BaseException) -> Optional[str]:
    """The message of a Lightning ``MisconfigurationException`` (a Trainer flag out of range, e.g.
    ``max_steps -5``) behind ``exc``: the user's setting, so one line rather than a traceback.
    Matched by name: this layer does not import Lightning."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__name__ == "MisconfigurationException":
            return " ".join(str(exc).split())
        exc = exc.__cause__ or exc.__context__
    return None


PREEMPTED = 143  # 128 + SIGTERM: what a shell reports for a process that SIGTERM ended


def run_command(body: Callable[[], object]) -> int:
    """Run a command's body; a user error (however wrapped) prints as one line and gives 2. A run
    stopped by SIGTERM / SIGUSR1 (Lightning's ``SIGTERMException``, a ``SystemExit`` whose code would
    be 0; see ``callbacks/preemption.py``) prints one line with what to resume from and gives 143."""
    try:
        body()
    except SystemExit as e:
        if type(e).__name__ != "SIGTERMException":  # matched by name: this layer does not import Lightning
            raise
        if getattr(e, "latentnav_rank", 0) == 0:
            resume = getattr(e, "latentnav_resume", None) or "stopped at a safe point"
            print(f"latentnav: stopped by a termination signal (SIGTERM/SIGUSR1): {resume}", file=sys.stderr)
        return PREEMPTED
    except Exception as e:
        error = user_error(e)
        refusal = _lightning_refusal(e) if error is None else None
        if error is None and refusal is None:
            raise
        print(f"latentnav: error: {one_line(error) if error is not None else 'trainer: ' + refusal}", file=sys.stderr)
        return 2
    return 0
