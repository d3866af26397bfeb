"""The two kinds of error a user can cause and fix without reading the code; each message says what to change.

The command lines print them as ``error: <message>`` and exit with status 2 (no traceback), as they do
for the data loader's ``dataset.loader.DataValidationError``.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """The run configuration cannot be used: a key, a value or a combination of them; the message names the key."""


class UsageError(ValueError):
    """A request that cannot be served as asked: a missing file, an unknown series, a level outside (0, 1),
    an argument of a command line; the message names the argument and the problem.

    ``field``: the request's field at fault when there is one (``"series"``, ``"origin"``, ``"h"``,
    ``"quantiles"``, ...), so that the HTTP service can name it in its 422 answer.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
