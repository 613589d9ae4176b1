"""The one exception type that means "the user can fix this".

The CLI prints its message on one line and exits with status 2; anything else
is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the input (study file, data, options, output folder).

    The message must name the file, field or option at fault and say how to
    fix it, on a single line.
    """

    exit_code = 2


def first_line(exc: BaseException) -> str:
    """An exception's message in one line (its first non-blank one), or its type's name when it has none."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
