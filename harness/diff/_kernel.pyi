"""Types of the compiled numeric kernel (`_kernel.pyx`)."""

from collections.abc import Sequence
from typing import Any

def finite_column(
    primary: Sequence[Any], candidate: Sequence[Any], rtol: float, atol: float
) -> tuple[int, int, float, float] | None: ...
