"""``value``: the decorator for domain value types (frozen dataclasses, slotted).

Slots need Python 3.10; the host agent must also run on 3.9, where the same classes are
plain frozen dataclasses. Type checkers see a PEP 681 dataclass transform either way.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Any, TypeVar

T = TypeVar("T")

if TYPE_CHECKING:
    from typing import dataclass_transform

    @dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
    def value(cls: type[T]) -> type[T]:
        """Make ``cls`` a frozen (and, on 3.10+, slotted) dataclass."""
        ...

else:
    _OPTIONS: dict[str, Any] = {"frozen": True}
    if sys.version_info >= (3, 10):
        _OPTIONS["slots"] = True

    def value(cls):
        """Make ``cls`` a frozen (and, on 3.10+, slotted) dataclass."""
        return dataclasses.dataclass(**_OPTIONS)(cls)
