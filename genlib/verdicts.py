"""Verdicts: the paper's effects as this run measured them, decided from the effect and its error.

An invariant holds at any scale and stops the page when it fails (:func:`genlib.viz.check`). A
verdict is different: a claim of the paper ("the cosine schedule beats the linear one") reproduced
at the scale of one profile, where training noise and sample size can hide or fake an effect. So a
verdict is never a bare ``a < b``. The chapter measures the **effect** in the paper's direction
(positive when the run agrees with the paper) and its **standard error** (over seeds, or a
bootstrap over samples), and :func:`outcome` decides:

===================  ==============================================
``reproduced``       effect > Z * se (the paper's direction, beyond noise)
``not reproduced``   effect < -Z * se (the opposite direction, beyond noise)
``inconclusive``     anything in between
===================  ==============================================

with ``Z = 2``. A verdict is shown, with effect +- SE, and never fails the build. In the ``ci``
profile the models train for seconds, so :func:`verdict` prints that the run proves the code path
only and decides nothing.

Every verdict is also saved as a small JSON file in this build's folder (``_build/verdicts/``,
or ``GENLIB_VERDICTS``), and with ``GENLIB_RECORD=1`` beside the chapter's records in
``chapters/records/verdicts/``, so chapter 15 can show this build's verdicts next to the committed
``gpu`` ones and ``python -m genlib.verdicts`` can sum them up at the end of ``make book``.
"""

from __future__ import annotations

import ast
import datetime as _dt
import json
import math
import os
import re
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from . import config

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "chapters" / "records" / "verdicts"
Z = 2.0
"""How many standard errors an effect must clear to count as reproduced (or as reversed)."""
OUTCOMES = ("reproduced", "not reproduced", "inconclusive")
CI_ONLY = "code path only: no verdict at ci scale"
"""What a ``ci`` build says instead of a verdict."""
_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", re.S | re.M)


@dataclass(frozen=True)
class Verdict:
    """One claim of the paper as one run measured it."""

    chapter: str
    key: str
    claim: str
    effect: float
    se: float
    outcome: str
    profile: str
    device: str
    date: str
    unit: str = ""

    def summary(self) -> str:
        """``reproduced, +0.52 +- 0.11`` (or the ci line)."""
        if self.outcome == CI_ONLY:
            return "code path only (ci)"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.outcome}, {self.effect:+.3g} +- {self.se:.2g}{unit}"


def outcome(effect: float, se: float, z: float = Z) -> str:
    """``reproduced``, ``not reproduced`` or ``inconclusive`` for an effect measured in the paper's
    direction (positive: the run agrees with the paper) with standard error ``se >= 0``."""
    effect, se = float(effect), float(se)
    if not math.isfinite(effect) or not math.isfinite(se) or se < 0:
        raise ValueError(f"a verdict needs a finite effect and a finite standard error >= 0, "
                         f"got effect {effect!r}, se {se!r}")
    if effect > z * se:
        return "reproduced"
    if effect < -z * se:
        return "not reproduced"
    return "inconclusive"


def mean_se(values) -> tuple[float, float]:
    """Mean and standard error of the mean of per-seed (or per-item) effects, at least two."""
    xs = [float(v) for v in values]
    if len(xs) < 2:
        raise ValueError(f"a standard error needs at least 2 values, got {len(xs)}")
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return mean, math.sqrt(var / len(xs))


def share_se(successes: int, trials: int) -> tuple[float, float]:
    """A share and its binomial standard error ``sqrt(p (1 - p) / n)``."""
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes} of {trials}")
    p = successes / trials
    return p, math.sqrt(p * (1 - p) / trials)


def store() -> Path:
    """This build's folder of verdicts: ``GENLIB_VERDICTS``, or ``_build/verdicts`` in the repository."""
    return Path(os.environ.get("GENLIB_VERDICTS") or ROOT / "_build" / "verdicts")


def _check_names(chapter: str, key: str) -> None:
    for part in (chapter, key):
        if not isinstance(part, str) or not part or "/" in part or "--" in part:
            raise ValueError(f"a verdict's chapter and key must be non-empty text without '/' or '--', got {part!r}")


def _write(path: Path, v: Verdict) -> None:
    text = json.dumps(asdict(v), indent=1, allow_nan=False) + "\n"
    config.write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def verdict(chapter: str, key: str, claim: str, effect: float, se: float, *, unit: str = "") -> None:
    """Decide, print and save one verdict.

    ``claim`` says the paper's claim in words (with its figure or equation); ``effect`` is measured
    in its direction (positive agrees with the paper) and ``se`` is its standard error, both in
    ``unit``. Prints one line; in the ``ci`` profile the line says the run proves the code path
    only. Returns nothing, so a cell that ends with a verdict shows only the line.
    """
    from . import records  # records reads the verdicts' files too; import late, no cycle at import

    _check_names(chapter, key)
    profile = config.profile()
    decided = outcome(effect, se)  # checks the numbers in every profile, ci included
    v = Verdict(chapter, key, claim, float(effect), float(se), CI_ONLY if profile == "ci" else decided,
                profile, records.device_name(), _dt.date.today().isoformat(), unit)
    if profile == "ci":
        print(f"VERDICT ({profile}): {CI_ONLY}. Claim: {claim}")
    else:
        print(f"VERDICT ({profile}): {decided}. Claim: {claim}. Effect {v.effect:+.3g} +- {v.se:.2g}"
              f"{' ' + unit if unit else ''} (Z = {Z:g}).")
    try:
        _write(store() / f"{chapter}--{key}.json", v)
    except OSError as e:  # a read-only checkout still shows the verdict
        warnings.warn(f"verdict {chapter}/{key} not saved in {store()}: {e}", stacklevel=2)
    if records.recording():
        _write(RECORDED / f"{chapter}--{key}--{profile}.json", v)


def _read(path: Path) -> Verdict:
    data = json.loads(path.read_text(encoding="utf-8"))
    fields = set(Verdict.__dataclass_fields__)
    if not isinstance(data, dict) or not {f for f in fields if f != "unit"} <= set(data):
        raise ValueError(f"verdict file {path} lacks some of {sorted(fields)}")
    return Verdict(**{k: data[k] for k in fields if k in data})


def _load_all(paths) -> dict[tuple[str, str], Verdict]:
    out = {}
    for path in sorted(paths):
        try:
            v = _read(path)
        except (OSError, ValueError, TypeError) as e:
            warnings.warn(f"skipping verdict file {path}: {e}", stacklevel=3)
            continue
        out[v.chapter, v.key] = v
    return out


def this_build() -> dict[tuple[str, str], Verdict]:
    """The verdicts this build's chapters saved so far, keyed by ``(chapter, key)``."""
    folder = store()
    return _load_all(folder.glob("*--*.json")) if folder.is_dir() else {}


def recorded(profile: str = "gpu") -> dict[tuple[str, str], Verdict]:
    """The committed verdicts of ``profile`` (``chapters/records/verdicts/``)."""
    return _load_all(RECORDED.glob(f"*--*--{profile}.json")) if RECORDED.is_dir() else {}


def expected() -> list[tuple[str, str, str]]:
    """Every ``(chapter, key, claim)`` the chapters decide, in chapter order, read from the
    ``verdict("<chapter>", "<key>", "<claim>", ...)`` calls in ``chapters/*.md``."""
    found: dict[tuple[str, str], str] = {}
    for md in sorted((ROOT / "chapters").glob("*.md")):
        for cell in _CELL.findall(md.read_text(encoding="utf-8")):
            code = "\n".join("" if re.match(r"^(:[\w-]+:|---)", line) else line for line in cell.split("\n"))
            try:
                tree = ast.parse(code)
            except SyntaxError:  # a YAML option block that is not code; the chapter test compiles cells
                continue
            for node in ast.walk(tree):
                name = getattr(node, "func", None)
                name = getattr(name, "id", None) or getattr(name, "attr", None)
                if isinstance(node, ast.Call) and name == "verdict" and len(node.args) >= 3:
                    parts = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None
                             for a in node.args[:3]]
                    if None not in parts:
                        found.setdefault((parts[0], parts[1]), parts[2])
    return [(c, k, claim) for (c, k), claim in found.items()]


def summary(verdicts=None, *, chapters=None) -> str:
    """One line: how many of the build's verdicts were reproduced, not reproduced, inconclusive.

    By default, this build's verdicts of the claims the chapters make today (a saved verdict of a
    claim since removed from its chapter is left out), of every chapter or of ``chapters`` (ids
    such as ``"07"``, ``"D"``)."""
    if verdicts is None:
        today = {(c, k) for c, k, _ in expected() if chapters is None or c in chapters}
        verdicts = {key: v for key, v in this_build().items() if key in today}
    vs = list(verdicts.values())
    if not vs:
        return "no verdicts were saved in this build"
    counts = {o: sum(v.outcome == o for v in vs) for o in (*OUTCOMES, CI_ONLY)}
    profiles = ", ".join(sorted({v.profile for v in vs}))
    if counts[CI_ONLY] == len(vs):
        return f"{len(vs)} claims ran as code paths only (profile {profiles}: no verdict at ci scale)"
    return (f"{counts['reproduced']} reproduced, {counts['not reproduced']} not reproduced, "
            f"{counts['inconclusive']} inconclusive (profile {profiles})")


def main(argv: list[str]) -> int:
    """``python -m genlib.verdicts [--clear]``: print the summary line of this build (or empty
    this build's folder, before a build)."""
    if argv == ["--clear"]:
        folder = store()
        for path in folder.glob("*--*.json") if folder.is_dir() else []:
            path.unlink()
        return 0
    if argv:
        print("usage: python -m genlib.verdicts [--clear]", file=sys.stderr)
        return 2
    print(f"Every invariant held (a failed one stops its page). Verdicts: {summary()}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
