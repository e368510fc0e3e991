"""Claims a chapter checks, printed as one stable line each (nbval re-checks the text)."""

from __future__ import annotations


def check(claim: str, passed: bool) -> None:
    """Print ``PASS: claim`` or ``FAIL: claim``.

    Returns nothing, so a cell that ends with a check shows only the line.
    """
    print(f"{'PASS' if bool(passed) else 'FAIL'}: {claim}")
