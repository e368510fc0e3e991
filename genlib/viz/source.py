"""Show genlib's own source in the page, so the book and the library never disagree.

``show_source(q_sample)`` as the last line of a cell shows a header naming the function, its
file and line range, and the code as a highlighted ``python`` block. The block is Markdown
(``text/markdown``), which Jupyter renders and Jupyter Book's myst-nb turns into a highlighted
code block. Its ``text/plain`` form, the one nbval compares, is a single stable line
(``<source of genlib.config.pick in genlib/config.py>``): editing the function changes the page,
not the stored test output.
"""

from __future__ import annotations

import inspect
import os
import textwrap
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Source:
    """The source of one object: code text, qualified name, file (relative to its package's
    parent folder, e.g. ``genlib/config.py``) and the first and last line numbers."""

    name: str
    path: str
    first_line: int
    last_line: int
    code: str

    def markdown(self) -> str:
        fence = "```"
        while fence in self.code:
            fence += "`"
        header = f"**`{self.name}`** in `{self.path}`, lines {self.first_line}-{self.last_line}"
        return f"{header}\n\n{fence}python\n{self.code.rstrip()}\n{fence}\n"

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __repr__(self) -> str:
        return f"<source of {self.name} in {self.path}>"

    def __str__(self) -> str:
        return self.code


def _relative_path(module_name: str, filename: str) -> str:
    """``genlib/viz/source.py`` for a genlib object: the file relative to the folder that holds
    its top-level package, found by walking up one folder per dotted part of the module name."""
    path = os.path.abspath(filename)
    parts = module_name.split(".") if module_name else []
    levels = len(parts) - 1 + (os.path.basename(path) == "__init__.py")
    root = os.path.dirname(path)
    for _ in range(max(levels, 0)):
        root = os.path.dirname(root)
    return os.path.relpath(path, root).replace(os.sep, "/")


def source_of(obj: Any) -> Source:
    """The :class:`Source` of a function, method, class or module (decorators included); for an
    instance (a built model), its class."""
    target = inspect.unwrap(obj) if callable(obj) else obj
    if isinstance(target, (staticmethod, classmethod)):
        target = target.__func__
    if isinstance(target, property):
        target = target.fget
    if not (inspect.isclass(target) or inspect.ismodule(target) or inspect.isroutine(target)):
        target = type(target)  # an instance, e.g. a built model: show its class
    try:
        lines, first = inspect.getsourcelines(target)
        filename = inspect.getsourcefile(target) or inspect.getfile(target)
    except (TypeError, OSError) as err:
        raise TypeError(f"show_source needs a Python function, class, method or module with a "
                        f"source file; {obj!r} has none ({err})") from None
    first = max(first, 1)  # modules report line 0
    module = inspect.getmodule(target)
    qual = getattr(target, "__qualname__", None)
    mod_name = module.__name__ if module else ""
    if inspect.ismodule(target):
        name = target.__name__
    else:
        name = f"{mod_name}.{qual}" if mod_name and qual else (qual or repr(obj))
    code = textwrap.dedent("".join(lines))
    return Source(name, _relative_path(mod_name, filename), first, first + len(lines) - 1, code)


def show_source(obj: Any) -> Source:
    """Show the source of a genlib function, class, method or module as a highlighted block.

    Returns a :class:`Source`; as the last expression of a cell it displays as Markdown with a
    header (qualified name, file, line range) above a ``python`` code block. ``str()`` of it is
    the code; its ``repr`` is one stable line.
    """
    return source_of(obj)
