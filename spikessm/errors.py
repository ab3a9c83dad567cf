"""The one exception type that means "the user asked for something invalid".

The CLI turns it into a single line on stderr and exit code 2; anything else is a bug (exit 1).
"""


class UserError(ValueError):
    """Bad input from the user: an unknown name, a bad value, a missing or malformed file."""
