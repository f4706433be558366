"""User-facing errors: one line that names the field and what would be valid; and the readers that
turn a bad file (unreadable, not UTF-8, not YAML or JSON, nested without end) into one."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

# A workload, suite, profile or config.json is a few levels deep (a method's list parameter: 4);
# deeper nesting is a corrupt file, refused before anything walks it.
MAX_NESTING = 32
# Values (lists and mappings counted with what they hold, YAML aliases expanded) a file may hold:
# the largest suite or config.json is a few thousand; aliases can make a short file expand past any memory.
MAX_VALUES = 1_000_000
# How much of a value a message repeats (a name of megabytes stays a line one can read).
SHOWN_CHARS = 80


class InputError(ValueError):
    """Bad input, as one line. The CLI prints the message alone and exits with code 2; `detail`
    keeps what it came from (pydantic's ValidationError, with every error, where there was one)."""

    def __init__(self, message: str, detail: Exception | None = None):
        super().__init__(" ".join(str(message).split()))
        self.detail = detail


def suggest(name: str, choices) -> str:
    if len(str(name)) > 255:  # no catalog name is near one this long (and difflib's time grows with it)
        return ""
    close = difflib.get_close_matches(str(name), list(choices), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def shown(value) -> str:
    """A value for a message: its repr, cut to SHOWN_CHARS characters with the length said."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text):,} characters)"


def first_error(e: Exception) -> str:
    """A pydantic ValidationError (or any error) as one line: 'field.path: message'."""
    errs = getattr(e, "errors", None)
    if callable(errs):
        err = errs()[0]
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = err["msg"].removeprefix("Value error, ")
        return f"{loc}: {msg}" if loc else msg
    return str(e)


def read_text(path, what: str) -> str:
    """A file's text; a missing, unreadable or non-UTF-8 file is an InputError naming `what`."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{what}: '{path}' is not UTF-8 text (byte {e.start} is {e.object[e.start:e.start + 1]!r}); "
                         "save it as UTF-8") from None
    except (OSError, ValueError) as e:  # ValueError: a path with a null byte
        raise InputError(f"{what}: cannot read '{path}': {getattr(e, 'strerror', None) or e}") from None


def parse_text(text: str, path, what: str, as_json: bool = False):
    """YAML (or JSON) text parsed, then checked to be a tree of sane size: nested at most
    MAX_NESTING deep, MAX_VALUES values in all, no YAML alias inside its own anchor."""
    import yaml

    kind = "JSON" if as_json else "YAML"
    try:
        data = json.loads(text) if as_json else yaml.safe_load(text)
    except RecursionError:
        raise InputError(f"{what}: '{path}' nests deeper than {kind} can be read; a {what} is at most "
                         f"{MAX_NESTING} levels deep") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{what}: '{path}' is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InputError(f"{what}: '{path}' is not valid YAML: {e.problem or e.context}{where}") from None
    except (yaml.YAMLError, ValueError, OverflowError) as e:  # ValueError: a date such as 2024-13-45
        raise InputError(f"{what}: '{path}' is not valid {kind}: {e}") from None
    _check_tree(data, path, what)
    return data


def _check_tree(data, path, what: str) -> None:
    open_, done = set(), {}

    def walk(x, depth: int) -> int:
        """The values x holds, itself included (shared ones counted each time they appear)."""
        if not isinstance(x, (dict, list)):
            return 1
        if depth > MAX_NESTING:
            raise InputError(f"{what}: '{path}' nests deeper than {MAX_NESTING} levels; a {what} is a shallow mapping")
        if id(x) in done:
            return done[id(x)]
        if id(x) in open_:
            raise InputError(f"{what}: '{path}' holds a value inside itself (a YAML alias within its own anchor)")
        open_.add(id(x))
        n = 1 + sum(walk(v, depth + 1) for v in (x.values() if isinstance(x, dict) else x))
        open_.discard(id(x))
        done[id(x)] = n
        if n > MAX_VALUES:
            raise InputError(f"{what}: '{path}' expands to more than {MAX_VALUES:,} values (YAML aliases repeated); "
                             f"a {what} holds a few thousand")
        return n

    walk(data, 0)


def read_data(path, what: str, as_json: bool | None = None):
    """A YAML or JSON file's content (JSON where the name ends in .json, unless `as_json` says)."""
    text = read_text(path, what)
    return parse_text(text, path, what, str(path).endswith(".json") if as_json is None else as_json)


def read_mapping(path, what: str) -> dict:
    """A file that must hold a mapping with text keys (a workload, a suite, a profile)."""
    raw = read_data(path, what)
    if not isinstance(raw, dict):
        raise InputError(f"{what} '{path}': must hold a mapping of fields, not {type(raw).__name__}")
    bad = [k for k in raw if not isinstance(k, str)]
    if bad:
        raise InputError(f"{what} '{path}': field names are text; got {shown(bad[0])}")
    return raw


def load_yaml(cls, path, what: str):
    """A YAML mapping read into the pydantic model `cls`; an unreadable file, a non-mapping or an
    invalid field is one InputError naming `what` (e.g. 'hardware profile') and the file."""
    from pydantic import ValidationError

    raw = read_mapping(path, what)
    try:
        return cls(**raw)
    except (TypeError, ValidationError) as e:
        raise InputError(f"{what} '{path}': {first_error(e)}", detail=e) from None


def existing_folder(value: str) -> bool:
    """Whether `value` names a folder (False for what no path can be: a null byte, too long a name)."""
    try:
        return Path(value).expanduser().is_dir()
    except (OSError, ValueError, RuntimeError):
        return False


def output_file(flag: str, value: str, suffixes: tuple[str, ...]) -> Path:
    """A file a command will write, checked before any work: not a folder, in a folder that
    exists, with one of `suffixes`."""
    try:
        if "\0" in value:
            raise ValueError("a path has no null byte")
        path = Path(value).expanduser()
        if path.is_dir():
            raise InputError(f"{flag}: {shown(value)} is a folder; give a file name in it, e.g. {path / ('out' + suffixes[0])}")
        if path.suffix.lower() not in suffixes:
            raise InputError(f"{flag}: {shown(value)} must end in {' or '.join(suffixes)}")
        if not path.parent.is_dir():
            raise InputError(f"{flag}: the folder '{path.parent}' does not exist; create it first")
    except (OSError, ValueError, RuntimeError) as e:  # RuntimeError: an unknown ~user
        if isinstance(e, InputError):
            raise
        raise InputError(f"{flag}: {shown(value)} is not a path this system can write: {getattr(e, 'strerror', None) or e}") from None
    return path
