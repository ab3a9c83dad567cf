"""The one exception type that means "the user asked for something invalid".

The CLI turns it into a single line on stderr and exit code 2; anything else is a bug (exit 1).
"""


class UserError(ValueError):
    """Bad input from the user: an unknown name, a bad value, a missing or malformed file."""


def check_choice(name: str, value: object, choices: tuple | list) -> None:
    """A one-line :class:`UserError` unless ``value`` is one of ``choices``; ``name`` says what was
    set (``"model.pool"``, ``"reset"``). The one check behind every option that takes a name."""
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
