"""genlib.verdicts: effect +- SE decides; ci decides nothing; every verdict is saved for chapter 15."""

import json
import math

import pytest
import torch

from genlib import verdicts
from genlib.metrics import frechet


@pytest.mark.parametrize("effect, se, expected", [
    (1.0, 0.4, "reproduced"), (1.0, 0.5, "inconclusive"), (-1.0, 0.4, "not reproduced"),
    (0.0, 0.0, "inconclusive"), (1e-9, 0.0, "reproduced"), (0.3, 1.0, "inconclusive")])
def test_outcome_needs_two_standard_errors(effect, se, expected):
    assert verdicts.outcome(effect, se) == expected


@pytest.mark.parametrize("effect, se", [(math.nan, 1.0), (1.0, math.inf), (1.0, -0.1)])
def test_outcome_refuses_numbers_that_decide_nothing(effect, se):
    with pytest.raises(ValueError, match="finite effect"):
        verdicts.outcome(effect, se)


def test_mean_se_and_share_se():
    mean, se = verdicts.mean_se([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and se == pytest.approx(math.sqrt(5 / 3 / 4))
    with pytest.raises(ValueError, match="at least 2"):
        verdicts.mean_se([1.0])
    assert verdicts.share_se(30, 100) == pytest.approx((0.3, math.sqrt(0.21 / 100)))
    with pytest.raises(ValueError):
        verdicts.share_se(5, 4)


@pytest.fixture
def build(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_VERDICTS", str(tmp_path / "build"))
    monkeypatch.setattr(verdicts, "RECORDED", tmp_path / "records")
    monkeypatch.delenv("GENLIB_RECORD", raising=False)
    # the summary counts the claims the chapters make today: here, the test's own claim
    monkeypatch.setattr(verdicts, "expected", lambda: [("07", "cosine", "cosine beats linear")])
    return tmp_path


def test_summary_leaves_out_claims_no_chapter_makes_any_more(build, monkeypatch, capsys):
    """A verdict file of a claim since removed from its chapter stays in the folder (a cached
    build does not rerun that page) but is not counted."""
    monkeypatch.setenv("GENLIB_PROFILE", "cpu")
    verdicts.verdict("07", "cosine", "cosine beats linear", 0.52, 0.11)
    verdicts.verdict("07", "retired", "a claim the chapter dropped", -5.0, 0.1)
    assert set(verdicts.this_build()) == {("07", "cosine"), ("07", "retired")}
    assert verdicts.summary() == "1 reproduced, 0 not reproduced, 0 inconclusive (profile cpu)"


def test_cpu_verdict_prints_effect_and_se_and_is_saved(build, monkeypatch, capsys):
    monkeypatch.setenv("GENLIB_PROFILE", "cpu")
    verdicts.verdict("07", "cosine", "cosine beats linear (Fig. 22)", 0.52, 0.11, unit="FD")
    out = capsys.readouterr().out
    assert out.startswith("VERDICT (cpu): reproduced. Claim: cosine beats linear (Fig. 22). Effect +0.52 +- 0.11 FD")
    saved = verdicts.this_build()[("07", "cosine")]
    assert (saved.outcome, saved.effect, saved.se, saved.profile) == ("reproduced", 0.52, 0.11, "cpu")
    assert not (build / "records").exists()  # not recording: nothing committed
    assert verdicts.summary() == "1 reproduced, 0 not reproduced, 0 inconclusive (profile cpu)"


def test_ci_prints_no_verdict_even_for_a_large_effect(build, monkeypatch, capsys):
    monkeypatch.setenv("GENLIB_PROFILE", "ci")
    verdicts.verdict("07", "cosine", "cosine beats linear", 50.0, 0.1)
    assert capsys.readouterr().out == f"VERDICT (ci): {verdicts.CI_ONLY}. Claim: cosine beats linear\n"
    assert verdicts.this_build()[("07", "cosine")].summary() == "code path only (ci)"
    assert "no verdict at ci scale" in verdicts.summary()
    with pytest.raises(ValueError):  # the numbers are still checked in ci
        verdicts.verdict("07", "cosine", "cosine beats linear", math.nan, 0.1)


def test_recording_commits_the_verdict_beside_the_records(build, monkeypatch, capsys):
    monkeypatch.setenv("GENLIB_PROFILE", "gpu")
    monkeypatch.setenv("GENLIB_RECORD", "1")
    verdicts.verdict("08", "eta", "eta = 0 beats eta = 1 at few steps", -0.3, 0.1)
    data = json.loads((build / "records" / "08--eta--gpu.json").read_text())
    assert data["outcome"] == "not reproduced" and data["profile"] == "gpu"
    assert verdicts.recorded("gpu")[("08", "eta")].summary() == "not reproduced, -0.3 +- 0.1"


def test_a_torn_verdict_file_is_skipped_with_a_warning(build, monkeypatch):
    folder = build / "build"
    folder.mkdir()
    (folder / "07--x.json").write_text("{")
    with pytest.warns(UserWarning, match="07--x.json"):
        assert verdicts.this_build() == {}


def test_clear_empties_this_builds_folder(build, monkeypatch, capsys):
    monkeypatch.setenv("GENLIB_PROFILE", "cpu")
    verdicts.verdict("07", "a", "claim", 1.0, 0.1)
    assert verdicts.main(["--clear"]) == 0 and verdicts.this_build() == {}
    assert verdicts.main([]) == 0
    assert "no verdicts were saved" in capsys.readouterr().out


@pytest.mark.parametrize("chapter, key", [("", "k"), ("07", "a--b"), ("07/x", "k")])
def test_bad_names_are_refused(build, chapter, key):
    with pytest.raises(ValueError, match="chapter and key"):
        verdicts.verdict(chapter, key, "claim", 1.0, 0.1)


def test_every_chapter_verdict_is_found_with_its_whole_claim():
    """Chapter 15 lists the claims from the chapters' text: every call must be found, once, with
    its claim whole (an apostrophe inside the claim once cut it short)."""
    import re

    found = verdicts.expected()
    calls = sum(len(re.findall(r"\bverdict\(\s*[\"']", md.read_text()))
                for md in (verdicts.ROOT / "chapters").glob("*.md"))
    assert len(found) == calls and len({(c, k) for c, k, _ in found}) == len(found)
    assert all(len(claim) > 20 for _, _, claim in found), [c for c in found if len(c[2]) <= 20]
    assert ("C", "dit-beats-unet", "a DiT of the U-Net's size and compute samples with a lower FID (App. G)") in found


def test_bootstrap_gap_sees_a_real_gap_and_not_a_fake_one():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(400, 4, generator=gen)
    close = torch.randn(400, 4, generator=gen) + 0.05
    far = torch.randn(400, 4, generator=gen) + 0.6
    gap, se = frechet.bootstrap_gap(real, close, far, rounds=50)
    assert verdicts.outcome(gap, se) == "reproduced"
    assert verdicts.outcome(*frechet.bootstrap_gap(real, far, close, rounds=50)) == "not reproduced"
    twin = torch.randn(400, 4, generator=gen) + 0.05
    assert verdicts.outcome(*frechet.bootstrap_gap(real, close, twin, rounds=50)) == "inconclusive"
    with pytest.raises(ValueError, match="rounds"):
        frechet.bootstrap_gap(real, close, far, rounds=1)
