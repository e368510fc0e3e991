"""Invariants a chapter checks: one stable ``PASS:`` line each, or the page stops.

An invariant (an identity, a closed form, equality with a reference) holds at any scale, so a
failed one is a bug, in the page or in genlib: :func:`check` raises :class:`InvariantError` with the
values found, in every profile, and the book build, nbval and ``benchmarks/run_chapter.py`` all
stop on it. The paper's effects, which depend on scale and noise, are verdicts instead
(:func:`genlib.verdicts.verdict`): shown, never a failure.
"""

from __future__ import annotations


class InvariantError(AssertionError):
    """An invariant of a page that did not hold; the message names the claim and the values found."""


def check(claim: str, passed, **found) -> None:
    """Print ``PASS: claim``, or raise :class:`InvariantError` when ``passed`` is false.

    ``found`` names the measured values the claim is about (``check("...", err < 1e-5,
    error=err)``); they are not printed on success (the stored line stays stable) and are shown in
    the error on failure. Returns nothing, so a cell that ends with a check shows only the line.
    """
    if not isinstance(claim, str) or not claim:
        raise TypeError(f"check needs the claim as a non-empty string, got {claim!r}")
    try:
        ok = bool(passed)
    except (RuntimeError, ValueError) as e:  # a tensor or array of several values has no truth value
        raise TypeError(f"check({claim!r}, ...) needs one truth value; got {type(passed).__name__} "
                        f"({e}); reduce it first, e.g. with .all()") from e
    if not ok:
        values = "; ".join(f"{k} = {v!r}" for k, v in found.items())
        raise InvariantError(f"FAIL: {claim}" + (f" (found {values})" if values else ""))
    print(f"PASS: {claim}")
