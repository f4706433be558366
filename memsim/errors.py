"""User-facing errors: one line that names the field and what would be valid."""

import difflib


class InputError(ValueError):
    """Bad input. The CLI prints the message alone and exits with code 2."""


def suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
