"""User-facing errors: one line that names the field and what would be valid."""

import difflib


class InputError(ValueError):
    """Bad input. The CLI prints the message alone and exits with code 2."""


def suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def first_error(e: Exception) -> str:
    """A pydantic ValidationError (or any error) as one line: 'field.path: message'."""
    errs = getattr(e, "errors", None)
    if callable(errs):
        err = errs()[0]
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = err["msg"].removeprefix("Value error, ")
        return f"{loc}: {msg}" if loc else msg
    return str(e)


def load_yaml(cls, path, what: str):
    """A YAML mapping read into the pydantic model `cls`; an unreadable file, a non-mapping or an
    invalid field is one InputError naming `what` (e.g. 'hardware profile') and the file."""
    from pathlib import Path

    import yaml
    from pydantic import ValidationError

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"{what}: cannot read '{path}': {e}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{what} '{path}': must hold a mapping")
    try:
        return cls(**raw)
    except (TypeError, ValidationError) as e:
        raise InputError(f"{what} '{path}': {first_error(e)}") from None
