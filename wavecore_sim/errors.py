"""The one error type users see: a single line that names the problem and the fix."""


class WavecoreError(Exception):
    """Bad input or an impossible configuration.

    The CLI prints ``str(error)`` on one line and exits with status 2; no traceback.
    """


class InvariantError(WavecoreError):
    """A run broke one of the invariants checked after every simulation (a bug, not bad input)."""
