"""What every command prints: aligned tables and one-line errors."""

from __future__ import annotations

import sys
from typing import Sequence


def error(message: str) -> int:
    """A mistake the user can fix: one line on stderr, exit code 2, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def format_table(headers: Sequence[str], rows: Sequence[Sequence], *, float_format: str = ".6g") -> str:
    """Plain-text columns, padded to the widest cell; None prints as an empty cell."""

    def cell(value) -> str:
        if value is None:
            return ""
        return format(value, float_format) if isinstance(value, float) else str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join([line, sep, *body])
