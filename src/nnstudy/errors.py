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
