"""Tests of the shapes world's captions (genlib.data.captions): Prompt, its text, the parser and
the scene check."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genlib.data.captions import (
    GRID,
    KINDS,
    NUMBERS,
    RELATIONS,
    Prompt,
    match_batch,
    matches,
    parse_caption,
    plural,
    scene_objects,
)
from genlib.data.render import COLOURS, SHAPES

PROPERTY = settings(max_examples=60, deadline=None)
objects_ = st.tuples(st.sampled_from(COLOURS), st.sampled_from(SHAPES))


@st.composite
def prompts(draw):
    kind = draw(st.sampled_from(KINDS))
    if kind == "shape":
        return Prompt("shape", (draw(objects_),))
    if kind == "count":
        return Prompt("count", (draw(objects_),) * draw(st.integers(1, 3)))
    colours = draw(st.lists(st.sampled_from(COLOURS), min_size=2, max_size=2, unique=True))
    objs = tuple((c, draw(st.sampled_from(SHAPES))) for c in colours)
    if kind == "colour":
        return Prompt("colour", objs)
    return Prompt("position", objs, draw(st.sampled_from(RELATIONS)))


def scene(*cells: tuple[int, str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell labels (two 9-vectors) of a scene given as (cell, colour, shape) triples."""
    cc, cs = torch.zeros(GRID * GRID, dtype=torch.long), torch.zeros(GRID * GRID, dtype=torch.long)
    for cell, colour, shape in cells:
        cc[cell], cs[cell] = COLOURS.index(colour) + 1, SHAPES.index(shape) + 1
    return cc, cs


# ----------------------------------------------------------------------------- Prompt


def test_text_of_each_kind():
    assert Prompt("shape", (("red", "circle"),)).text == "a red circle"
    assert Prompt("colour", (("red", "circle"), ("blue", "square"))).text == "a red circle and a blue square"
    assert Prompt("count", (("green", "triangle"),) * 3).text == "three green triangles"
    assert Prompt("count", (("cyan", "cross"),) * 2).text == "two cyan crosses"
    assert Prompt("count", (("cyan", "cross"),)).text == "one cyan cross"
    texts = {r: Prompt("position", (("red", "circle"), ("blue", "square")), r).text for r in RELATIONS}
    assert texts == {
        "left of": "a red circle to the left of a blue square",
        "right of": "a red circle to the right of a blue square",
        "above": "a red circle above a blue square",
        "below": "a red circle below a blue square",
    }


def test_plural():
    assert [plural(s) for s in SHAPES] == ["circles", "squares", "triangles", "crosses"]


@pytest.mark.parametrize(
    "args,match",
    [
        (("style", (("red", "circle"),)), "unknown prompt kind 'style'"),
        (("shape", (("pink", "circle"),)), "unknown colour 'pink'"),
        (("shape", (("red", "oval"),)), "unknown shape 'oval'"),
        (("shape", ()), "exactly one object, got 0"),
        (("shape", (("red", "circle"), ("blue", "square"))), "exactly one object, got 2"),
        (("colour", (("red", "circle"),)), "'colour' prompt names exactly two objects, got 1"),
        (("position", (("red", "circle"),) * 3, "above"), "'position' prompt names exactly two objects, got 3"),
        (("count", ()), "'count' prompt repeats one"),
        (("count", (("red", "circle"),) * 4), "'count' prompt repeats one"),
        (("count", (("red", "circle"), ("red", "square"))), "'count' prompt repeats one"),
        (("position", (("red", "circle"), ("blue", "square"))), "relation is given exactly for 'position'"),
        (("colour", (("red", "circle"), ("blue", "square")), "above"), "relation is given exactly for 'position'"),
        (("position", (("red", "circle"), ("blue", "square")), "near"), "unknown relation 'near'"),
    ],
)
def test_prompt_validation(args, match):
    with pytest.raises(ValueError, match=match):
        Prompt(*args)


def test_prompt_is_frozen_and_hashable():
    p = Prompt("shape", (("red", "circle"),))
    with pytest.raises(AttributeError):
        p.kind = "count"
    assert len({p, Prompt("shape", (("red", "circle"),))}) == 1


# ----------------------------------------------------------------------------- parse_caption


@PROPERTY
@given(p=prompts())
def test_parse_round_trip(p):
    assert parse_caption(p.text) == p


@PROPERTY
@given(p=prompts(), data=st.data())
def test_parse_ignores_case_whitespace_and_full_stop(p, data):
    words = p.text.split()
    spaces = data.draw(st.lists(st.sampled_from([" ", "  ", "\t", " \n "]), min_size=len(words) - 1, max_size=len(words) - 1))
    text = words[0] + "".join(s + w for s, w in zip(spaces, words[1:]))
    text = "".join(c.upper() if data.draw(st.booleans()) else c for c in text)
    text = data.draw(st.sampled_from(["", " ", "  \t"])) + text + data.draw(st.sampled_from(["", ".", ". ", " "]))
    assert parse_caption(text) == p


@pytest.mark.parametrize(
    "text,expected",
    [
        ("A Red Circle.", Prompt("shape", (("red", "circle"),))),
        ("an blue square", Prompt("shape", (("blue", "square"),))),
        ("  two   YELLOW crosses .", Prompt("count", (("yellow", "cross"),) * 2)),
        ("one green triangle", Prompt("count", (("green", "triangle"),))),
        ("a red circle and an cyan cross", Prompt("colour", (("red", "circle"), ("cyan", "cross")))),
        ("a purple square below a red circle", Prompt("position", (("purple", "square"), ("red", "circle")), "below")),
    ],
)
def test_parse_variants(text, expected):
    assert parse_caption(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "two circle",  # plural number with a singular noun
        "two red circle",
        "one red circles",  # and the other way round
        "three blue squares and a red circle",
        "four red circles",
        "a pink circle",
        "a red hexagon",
        "a red circle left of a blue square",
        "a red circle next to a blue square",
        "red circle",
        "",
        "a red circle, a blue square",
    ],
)
def test_parse_rejects_text_outside_the_grammar(text):
    with pytest.raises(ValueError, match="outside the shapes grammar"):
        parse_caption(text)


def test_parse_error_lists_the_templates():
    with pytest.raises(ValueError) as err:
        parse_caption("two circle")
    msg = str(err.value)
    assert "'two circle'" in msg
    for template in (
        "'a <colour> <shape>'",
        "'a <colour> <shape> and a <colour> <shape>'",
        "'<one|two|three> <colour> <shapes>'",
        "<to the left of|to the right of|above|below>",
    ):
        assert template in msg
    assert all(c in msg for c in COLOURS) and all(s in msg for s in SHAPES)


def test_one_vs_two_circle():
    assert parse_caption("one red circle") == Prompt("count", (("red", "circle"),))
    assert parse_caption("two red circles") == Prompt("count", (("red", "circle"),) * 2)
    with pytest.raises(ValueError):
        parse_caption("two red circle")


# ----------------------------------------------------------------------------- matches


def test_scene_objects_reads_cells_row_major():
    cc, cs = scene((0, "red", "circle"), (5, "blue", "cross"))
    assert scene_objects(cc, cs) == [(0, "red", "circle"), (5, "blue", "cross")]
    cs[5] = 0  # half an object (colour but no shape) does not count
    assert scene_objects(cc, cs) == [(0, "red", "circle")]
    with pytest.raises(ValueError, match="two vectors of 9 cell labels, got 8 and 9"):
        scene_objects(cc[:8], cs)


def test_matches_true_cases():
    assert matches(Prompt("shape", (("red", "circle"),)), *scene((4, "red", "circle")))
    assert matches(Prompt("count", (("blue", "cross"),) * 3), *scene((0, "blue", "cross"), (4, "blue", "cross"), (8, "blue", "cross")))
    two = (("red", "circle"), ("blue", "square"))
    assert matches(Prompt("colour", two), *scene((7, "blue", "square"), (1, "red", "circle")))
    # cell 3 = row 1 col 0, cell 5 = row 1 col 2, cell 1 = row 0 col 1, cell 7 = row 2 col 1
    assert matches(Prompt("position", two, "left of"), *scene((3, "red", "circle"), (5, "blue", "square")))
    assert matches(Prompt("position", two, "right of"), *scene((5, "red", "circle"), (0, "blue", "square")))
    assert matches(Prompt("position", two, "above"), *scene((1, "red", "circle"), (7, "blue", "square")))
    assert matches(Prompt("position", two, "below"), *scene((7, "red", "circle"), (2, "blue", "square")))


def test_matches_false_cases():
    one = Prompt("shape", (("red", "circle"),))
    assert not matches(one, *scene((4, "red", "circle"), (0, "blue", "square")))  # extra object
    assert not matches(one, *scene((4, "green", "circle")))  # wrong colour
    assert not matches(one, *scene((4, "red", "square")))  # wrong shape
    assert not matches(one, *scene())  # nothing drawn
    count = Prompt("count", (("red", "circle"),) * 2)
    assert not matches(count, *scene((0, "red", "circle")))  # too few
    assert not matches(count, *scene((0, "red", "circle"), (1, "red", "circle"), (2, "red", "circle")))  # too many
    two = (("red", "circle"), ("blue", "square"))
    # colour binding swapped: a blue circle and a red square
    assert not matches(Prompt("colour", two), *scene((0, "blue", "circle"), (1, "red", "square")))
    # wrong relation, and same column/row (neither left nor right)
    assert not matches(Prompt("position", two, "left of"), *scene((5, "red", "circle"), (3, "blue", "square")))
    assert not matches(Prompt("position", two, "left of"), *scene((1, "red", "circle"), (7, "blue", "square")))
    assert not matches(Prompt("position", two, "above"), *scene((3, "red", "circle"), (5, "blue", "square")))
    assert not matches(Prompt("position", two, "below"), *scene((1, "red", "circle"), (7, "blue", "square")))


def test_two_object_prompts_need_two_colours():
    # The world never draws them, and a relation between two identical objects is ambiguous.
    with pytest.raises(ValueError, match="different colours"):
        parse_caption("a red circle to the left of a red circle")
    with pytest.raises(ValueError, match="different colours"):
        Prompt("colour", (("red", "circle"), ("red", "square")))


def test_only_one_full_stop_is_ignored():
    assert parse_caption("A red circle.").text == "a red circle"
    with pytest.raises(ValueError, match="outside the shapes grammar"):
        parse_caption("a red circle..")


def test_match_batch():
    ps = [Prompt("shape", (("red", "circle"),)), Prompt("shape", (("blue", "square"),))]
    a, b = scene((4, "red", "circle")), scene((4, "red", "circle"))
    cc, cs = torch.stack([a[0], b[0]]), torch.stack([a[1], b[1]])
    out = match_batch(ps, cc, cs)
    assert out.dtype == torch.bool and out.tolist() == [True, False]
    with pytest.raises(ValueError, match="expected 3 prompts"):
        match_batch(ps + ps[:1], cc, cs)
    with pytest.raises(ValueError, match="label tensors"):
        match_batch(ps, cc, cs[:, :8])
    with pytest.raises(ValueError, match="label tensors"):
        match_batch(ps[:1], cc[0], cs[0])


def test_constants():
    assert KINDS == ("shape", "colour", "count", "position")
    assert NUMBERS == ("one", "two", "three") and GRID == 3


def test_caption_vocab_round_trip_and_errors():
    from genlib.data import shapes
    from genlib.data.captions import CaptionVocab, parse_caption

    vocab = CaptionVocab()
    assert len(set(vocab.words)) == len(vocab) and vocab.words[:3] == ("<pad>", "<bos>", "<eos>")
    texts = shapes.sample(200, size=16, seed=3).captions
    ids = vocab.encode(texts, 16)
    assert ids.shape == (200, 16) and (ids[:, 0] == vocab.BOS).all()
    back = vocab.decode(ids)
    assert back == [" ".join(t.lower().split()).rstrip(".") for t in texts]
    assert all(parse_caption(t) == parse_caption(b) for t, b in zip(texts, back))
    with pytest.raises(ValueError, match="outside the shapes grammar"):
        vocab.encode(["a purple dragon"], 8)
    with pytest.raises(ValueError, match="needs 5 tokens"):
        vocab.encode(["a red circle"], 4)
    assert vocab.decode(torch.tensor([[vocab.BOS, vocab.index["a"], vocab.BOS, vocab.EOS]])) == ["a <bos>"]
