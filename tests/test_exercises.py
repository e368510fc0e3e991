"""Every page's exercises are sphinx-exercise directives, each with a solution hidden until opened.

An exercise is ``{exercise}`` with ``:label: ex-<page>-<n>`` (``ex-07-2``, ``ex-appD-1``); its
solution is a ``{solution} ex-...`` directive, or a gated ``{solution-start} ex-...`` ...
``{solution-end}`` pair around code cells when the answer is computed (the code runs in every
build, so a numeric answer stays right). Both carry ``:class: dropdown``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9a]*.md"))
FENCE = re.compile(r"^(`{3,}|:{3,})\{(exercise|solution|solution-start|solution-end)\}\s*(\S*)\s*$")


def page_id(path: Path) -> str:
    head = path.stem.split("_", 1)[0]
    return head


def directives(text: str) -> list[dict]:
    """The exercise/solution directives of a MyST page, in order, with their options and body."""
    lines = text.split("\n")
    found = []
    for i, line in enumerate(lines):
        m = FENCE.match(line)
        if not m:
            continue
        fence, kind, arg = m.groups()
        opts, body, j = {}, [], i + 1
        while j < len(lines) and lines[j].strip() != fence:
            o = re.match(r"^:(\w[\w-]*):\s*(.*)$", lines[j])
            if o and not body:
                opts[o.group(1)] = o.group(2).strip()
            elif lines[j].strip() or body:
                body.append(lines[j])
            j += 1
        found.append({"kind": kind, "arg": arg, "opts": opts, "body": "\n".join(body).strip(), "line": i + 1})
    return found


def exercise_problems(page: str, text: str) -> list[str]:
    """What is wrong with a page's exercises (empty: nothing)."""
    problems = []
    ds = directives(text)
    exercises = [d for d in ds if d["kind"] == "exercise"]
    if not exercises:
        problems.append("no {exercise} directive")
    labels = [d["opts"].get("label", "") for d in exercises]
    for n, label in enumerate(labels, 1):
        if label != f"ex-{page}-{n}":
            problems.append(f"exercise {n} is labelled {label!r}; expected 'ex-{page}-{n}'")
    for d in exercises:
        if not d["body"]:
            problems.append(f"exercise {d['opts'].get('label')} has no text")
    solutions = [d for d in ds if d["kind"] in ("solution", "solution-start")]
    for label in labels:
        mine = [d for d in solutions if d["arg"] == label]
        if len(mine) != 1:
            problems.append(f"{label} has {len(mine)} solutions; expected one")
            continue
        d = mine[0]
        if "dropdown" not in d["opts"].get("class", "").split():
            problems.append(f"the solution to {label} is not hidden (needs :class: dropdown)")
        if d["kind"] == "solution" and not d["body"]:
            problems.append(f"the solution to {label} is empty")
    for d in solutions:
        if d["arg"] not in labels:
            problems.append(f"a solution (line {d['line']}) answers {d['arg']!r}, which is no exercise here")
    starts = sum(d["kind"] == "solution-start" for d in ds)
    ends = sum(d["kind"] == "solution-end" for d in ds)
    if starts != ends:
        problems.append(f"{starts} solution-start but {ends} solution-end")
    section = re.search(r"^## Exercises\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if section is None:
        problems.append("no '## Exercises' section")
    else:
        outside = re.sub(r"^(`{3,}|:{3,})\{[^}]+\}.*?^\1\s*$", "", section.group(1), flags=re.M | re.S)
        if re.search(r"^\d+\.\s", outside, re.M):
            problems.append("a numbered exercise outside an {exercise} directive")
    return problems


GOOD = """## Exercises

````{exercise}
:label: ex-99-1

Compute it.
````

````{solution-start} ex-99-1
:class: dropdown
````

```{code-cell} ipython3
print(1)
```

````{solution-end}
````

````{exercise}
:label: ex-99-2

Explain it.
````

````{solution} ex-99-2
:class: dropdown

Because.
````
"""


def test_a_well_formed_page_passes_and_each_defect_is_named():
    assert exercise_problems("99", GOOD) == []
    broken = {
        "0 solutions": GOOD.replace("````{solution} ex-99-2\n:class: dropdown\n\nBecause.\n````\n", ""),
        "not hidden": GOOD.replace(":class: dropdown\n\nBecause.", "\nBecause."),
        "labelled": GOOD.replace("ex-99-2\n\nExplain", "ex-99-7\n\nExplain"),
        "solution-end": GOOD.replace("````{solution-end}\n````\n", ""),
        "outside": GOOD + "\n3. Another exercise, written as a list item.\n",
        "no {exercise}": "## Exercises\n\n1. Only a list.\n",
    }
    for words, text in broken.items():
        assert any(words in p for p in exercise_problems("99", text)), (words, exercise_problems("99", text))


def test_there_are_pages():
    assert len(CHAPTERS) >= 19


@pytest.mark.parametrize("page", CHAPTERS, ids=lambda p: p.name)
def test_every_exercise_has_a_hidden_solution(page):
    problems = exercise_problems(page_id(page), page.read_text(encoding="utf-8"))
    assert not problems, f"{page.name}: {problems}"
