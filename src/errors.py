"""The one exception type for problems a user can fix, and the one way a command ends on one.

Raised at the boundary with a message that names the offending value and what was
expected; `src.run` prints it as one line, without a traceback, and marks the run FAILED.
"""

import sys
from typing import NoReturn


class UserError(Exception):
    """A bad path, option or dataset: something the user can fix, not a bug."""


def exit_with_error(message, status: int = 1) -> NoReturn:
    """End the command with `error: <message>` on stderr, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)
