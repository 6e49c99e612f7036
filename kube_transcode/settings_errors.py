"""One way to tell a user which KT_* variable is wrong, for every settings object."""

from __future__ import annotations

from pydantic import ValidationError


def describe_settings_error(error: ValidationError, *, prefix: str = "KT_") -> str:
    """One indented line per bad variable: `  KT_QUEUE: String should match pattern ...`."""
    lines = []
    for problem in error.errors(include_url=False):
        field = str(problem["loc"][0]).upper() if problem["loc"] else "?"
        lines.append(f"  {prefix}{field}: {problem['msg']}")
    return "\n".join(lines)
