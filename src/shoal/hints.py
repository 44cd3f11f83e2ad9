"""What a config error says beyond "wrong": the key that was probably meant
("did you mean pagination_limit?") and the line of a YAML file that does not
parse.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word`` (difflib's ratio 0.6 or more), if any."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key(model: type[BaseModel], location: Sequence[int | str]) -> str:
    """What to say of the key at ``location`` that ``model`` (the whole config)
    does not take there: the nearest key it does take, else the keys it takes."""
    keys = section_keys(model, location[:-1])
    if not keys:
        return "unknown key"
    guess = nearest(str(location[-1]), keys)
    if guess is not None:
        return f"unknown key; did you mean {guess}?"
    return f"unknown key; this section takes {', '.join(sorted(keys))}"


def section_keys(model: type[BaseModel], location: Sequence[int | str]) -> list[str]:
    """The keys of the section of ``model`` at ``location`` (empty when the
    location is not a section of fixed keys)."""
    current: Any = model
    for part in location:
        current = _inner(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next(
                (info for name, info in current.model_fields.items() if part in (name, info.alias)),
                None,
            )
            if field is None:
                return []
            current = field.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _inner(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [
            info.alias or name
            for name, info in current.model_fields.items()
            if not info.exclude  # set by the loader, never read from the file
        ]
    return []


def _inner(annotation: Any) -> Any:
    """``X`` of ``X | None``; anything else as it is."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)]
        if len(kinds) == 1:
            return kinds[0]
    return annotation


def yaml_problem(error: yaml.YAMLError, path: Path) -> str:
    """A YAML parse error on one line, as ``FILE:LINE:COLUMN: not valid YAML:
    …``, instead of PyYAML's lines naming ``"<unicode string>"``."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if mark is None or problem is None:
        return f"{path}: not valid YAML: {' '.join(str(error).split())}"
    text = f"{path}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {problem}"
    context, start = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and start is not None:
        text += f" ({context} that starts at line {start.line + 1}, column {start.column + 1})"
    return text
