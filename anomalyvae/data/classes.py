"""Parse a class spec such as '0-8', '0,2,4', '3', '1-3,7' or 'all' into the set of normal classes.

Every class may be normal ('all', '0-9'): the anomalies then come from elsewhere (evaluate --anomalies).
"""

from __future__ import annotations

import re

from ..errors import AnomalyVAEError

_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_classes(spec: str, num_classes: int = 10) -> list[int]:
    """Sorted normal classes."""
    if not isinstance(spec, str) or not spec.strip():
        raise AnomalyVAEError("--normal is empty; give classes like '0-8', '0,2,4', '3', '1-3,7' or 'all'")
    if spec.strip().lower() == "all":
        return list(range(num_classes))
    chosen: set[int] = set()
    for part in spec.split(","):
        m = _PART.match(part)
        if not m:
            raise AnomalyVAEError(
                f"--normal {spec!r}: cannot read {part.strip()!r}; use numbers and ranges like '0-8' or '1-3,7', or 'all'"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if lo > hi:
            raise AnomalyVAEError(f"--normal {spec!r}: range {lo}-{hi} runs backwards; write {hi}-{lo}")
        if hi >= num_classes:
            raise AnomalyVAEError(
                f"--normal {spec!r}: class {hi} is out of range; classes are 0-{num_classes - 1}"
            )
        chosen.update(range(lo, hi + 1))
    return sorted(chosen)


def format_classes(classes: list[int]) -> str:
    """The shortest spec for a set of classes, e.g. [0,1,2,3,7] -> '0-3,7' (used in names and params)."""
    out: list[str] = []
    for c in sorted(set(classes)):
        if out and _end(out[-1]) == c - 1:
            start = out[-1].split("-")[0]
            out[-1] = f"{start}-{c}"
        else:
            out.append(str(c))
    return ",".join(out)


def _end(part: str) -> int:
    return int(part.split("-")[-1])
