"""The one error policy of the front ends: which errors are the user's, and what they read.

The engine raises ``ValueError`` (and subclasses such as ``CheckpointError`` and
``VolumeError``) and ``OSError`` (a missing file, a folder that is taken, a full disk) with
messages written for people, and ``FloatingPointError`` when a run diverges. The command line
reports these as one line (exit status 2) and the widget as a notification; anything else is
a bug, shown with its type (widget) or its traceback (command line).
"""

from __future__ import annotations

#: Errors that mean "bad input or a problem of the machine", reported by their message.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, FloatingPointError)


def error_message(error: BaseException) -> str:
    """The message a user sees for an exception raised by the engine.

    The errors of :data:`USER_ERRORS` carry messages written for people, so those are shown
    as they are; anything else is unexpected and keeps its type name to help a bug report.

    >>> error_message(ValueError("factor 3 is not 2")), error_message(KeyError("w"))
    ('factor 3 is not 2', "KeyError: 'w'")
    """
    if isinstance(error, USER_ERRORS):
        return str(error)
    return f"{type(error).__name__}: {error}"
