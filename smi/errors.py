"""User-facing error type.

Every problem caused by input (a bad config key, a missing dataset folder, an unknown model
name, a corrupt checkpoint) is raised as :class:`SMIError` with a message that names the
problem and the fix. The CLI prints such errors as one line instead of a traceback.
"""

from __future__ import annotations


class SMIError(Exception):
    """An error caused by the user's input, with a message that says how to fix it."""
