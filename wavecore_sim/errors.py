"""The one error type users see: a single line that names the problem and the fix."""


class WavecoreError(Exception):
    """Bad input or an impossible configuration.

    The CLI prints ``str(error)`` on one line and exits with status 2; no traceback.
    """


class InvariantError(WavecoreError):
    """A run broke one of the invariants checked after every simulation (a bug, not bad input)."""


def brief(value: object, limit: int = 40) -> str:
    """``repr(value)`` for an error line, cut to about ``limit`` characters (a 5,000-digit
    number typed by mistake must not make the one line 5,000 characters long)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 10]}...({len(text):,} characters)"
