"""show_source: the page shows the code; the text nbval compares stays one stable line."""

import inspect

import pytest

from genlib import config
from genlib.viz import Table, show_source


def test_function_source_and_header():
    s = show_source(config.pick)
    md = s._repr_markdown_()
    assert "def pick(" in md and "```python\n" in md and md.rstrip().endswith("```")
    lines, first = inspect.getsourcelines(config.pick)
    assert f"`genlib/config.py`, lines {first}-{first + len(lines) - 1}" in md
    assert "**`genlib.config.pick`**" in md
    assert repr(s) == "<source of genlib.config.pick in genlib/config.py>"
    assert str(s).startswith("def pick(")


def test_methods_are_dedented_and_instances_show_their_class():
    m = show_source(Table.to_text)
    assert m.name == "genlib.viz.tables.Table.to_text" and m.code.startswith("def to_text")
    assert show_source(Table([[1]], ["a"])).name == "genlib.viz.tables.Table"
    assert show_source(config).first_line == 1


def test_fence_longer_than_any_backticks_in_the_code():
    def f():
        return "```"

    assert "````python" in show_source(f).markdown()


def test_objects_without_source_raise():
    with pytest.raises(TypeError, match="show_source"):
        show_source(len)
