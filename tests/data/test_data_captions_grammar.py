"""The whole caption grammar (all_prompts) and the lenient per-category check (category_match)."""

import torch

from genlib.data import captions, shapes


def _scene(*objects):
    """Cell labels of a scene from (cell, colour, shape) triples."""
    cc, cs = torch.zeros(9, dtype=torch.long), torch.zeros(9, dtype=torch.long)
    for cell, colour, shape in objects:
        cc[cell], cs[cell] = captions.COLOURS.index(colour) + 1, captions.SHAPES.index(shape) + 1
    return cc, cs


def test_all_prompts_is_the_whole_grammar():
    prompts = captions.all_prompts()
    assert len(prompts) == 2496 and len({p.text for p in prompts}) == 2496
    drawn = shapes.sample(1000, size=16, seed=4).captions
    assert set(drawn) <= {p.text for p in prompts}
    assert [sum(p.kind == k for p in prompts) for k in captions.KINDS] == [24, 480, 72, 1920]


def test_category_match_is_lenient_where_matches_is_strict():
    p = captions.parse_caption("a red circle to the left of a blue square")
    scene = _scene((3, "red", "square"), (5, "blue", "circle"))  # right colours and places, wrong shapes
    assert captions.category_match(p, *scene) and not captions.matches(p, *scene)
    assert not captions.category_match(p, *_scene((5, "red", "square"), (3, "blue", "circle")))
    shape = captions.parse_caption("a green cross")
    assert captions.category_match(shape, *_scene((0, "green", "cross"), (8, "red", "circle")))
    assert not captions.category_match(shape, *_scene((0, "green", "circle")))
    count = captions.parse_caption("two blue squares")
    assert captions.category_match(count, *_scene((0, "red", "cross"), (4, "cyan", "circle")))
    assert not captions.category_match(count, *_scene((0, "blue", "square")))
    colour = captions.parse_caption("a red circle and a blue square")
    assert not captions.category_match(colour, *_scene((0, "blue", "circle"), (4, "red", "square")))  # binding


def test_real_scenes_satisfy_both_checks():
    batch = shapes.sample(300, size=16, seed=9)
    for lenient in (False, True):
        assert captions.match_batch(batch.prompts, batch.attrs["cell_colour"], batch.attrs["cell_shape"], lenient=lenient).all()
