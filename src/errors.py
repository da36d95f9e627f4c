"""The one exception type for problems a user can fix.

Raised at the boundary with a message that names the offending value and what was
expected; `src.run` prints it as one line, without a traceback, and marks the run FAILED.
"""


class UserError(Exception):
    """A bad path, option or dataset: something the user can fix, not a bug."""
