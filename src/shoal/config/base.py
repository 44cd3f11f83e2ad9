"""What every part of the config shares: its error, and the base of its sections."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` holds one line per bad key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{source} is not a valid Shoal config:\n{lines}")


class Section(BaseModel):
    """A mapping of the config file. Unknown keys are refused, so that a typo is
    reported instead of ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
