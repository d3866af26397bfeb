"""What the modules' option dataclasses share: named choices, and the checks of their fields.

Each configurable module states its options once, as a dataclass beside it (``AttentionConfig`` in
``modules/attention.py``, ...): a field's type, default and comment are the option's whole
definition. The run config (``experiment/config.py``) is composed from these same dataclasses, so a
YAML key, its type and its allowed values are the module's own; the module reads its fields by
name. A choice is a :class:`Choice` enum, so a value outside it fails when the config is loaded,
like a misspelt key, with the allowed values listed.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

C = TypeVar("C", bound="Choice")


class Choice(str, Enum):
    """One of a fixed set of named values. A member equals its name as a string
    (``Gate.scalar == "scalar"``) and prints as it; config files and overrides write that name."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def names(cls) -> str:
        return ", ".join(member.value for member in cls)


def choose(kind: type[C], value: str, option: str) -> C:
    """``value`` as a member of ``kind``, or a ValueError naming ``option`` and the allowed values."""
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"unknown {option} '{value}'; choose one of {kind.names()}") from None


def require(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition`` holds: the options' checks read as the rules they are."""
    if not condition:
        raise ValueError(message)
