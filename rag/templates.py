"""Prompt templates are files in `rag/prompts/`; rendering with a missing variable is an error."""

from __future__ import annotations

import functools
from importlib import resources
from string import Template

from rag.errors import ConfigError


@functools.cache
def _load(name: str) -> Template:
    try:
        text = resources.files("rag").joinpath("prompts", f"{name}.txt").read_text("utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"no prompt template named {name!r} in rag/prompts/") from e
    return Template(text.rstrip("\n"))


def render(name: str, **values: object) -> str:
    """Fill template `name` with `values`; every $placeholder must be given."""
    template = _load(name)
    try:
        return template.substitute({key: str(value) for key, value in values.items()})
    except KeyError as e:
        raise ConfigError(f"prompt template {name!r} needs a value for {e.args[0]!r}") from e
    except ValueError as e:
        raise ConfigError(f"prompt template {name!r} is malformed: {e}") from e
