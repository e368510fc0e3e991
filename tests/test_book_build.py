"""`make book`'s driver (book/build.py) and its progress extension (book/_ext/build_progress.py)."""

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load("book_build", ROOT / "book" / "build.py")
progress = _load("build_progress", ROOT / "book" / "_ext" / "build_progress.py")


def test_pages_are_chosen_by_prefix_in_book_order():
    pages = build.toc_pages()
    assert pages[0] == "chapters/02_generative_models" and "chapters/appE_kernels" in pages
    assert build.select(pages, ["appD", "07"]) == ["chapters/07_ddpm", "chapters/appD_samplers"]
    with pytest.raises(ValueError, match="no page starts with '99'.*07_ddpm"):
        build.select(pages, ["99"])


def test_partial_toc_keeps_the_root_and_the_chosen_pages(tmp_path):
    import yaml

    toc = yaml.safe_load(build.partial_toc(["chapters/07_ddpm", "chapters/appD_samplers"], tmp_path / "t.yml")
                         .read_text())
    assert toc["root"] == "book/intro"
    assert [(p["caption"], [c["file"] for c in p["chapters"]]) for p in toc["parts"]] == [
        ("Diffusion", ["chapters/07_ddpm"]), ("Appendices", ["chapters/appD_samplers"]),
        ("Back matter", ["book/references"])]


def test_digest_follows_genlib_the_requirements_and_the_profile(tmp_path):
    for name in ("genlib/diffusion", "book/_ext"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "genlib" / "diffusion" / "samplers.py").write_text("x = 1\n")
    (tmp_path / "book" / "_ext" / "ext.py").write_text("")
    (tmp_path / "requirements.txt").write_text("torch\n")
    (tmp_path / "pyproject.toml").write_text("")
    first = build.digest(tmp_path, "cpu")
    (tmp_path / "genlib" / "diffusion" / "__pycache__").mkdir()
    (tmp_path / "genlib" / "diffusion" / "__pycache__" / "samplers.pyc").write_bytes(b"\0")
    assert build.digest(tmp_path, "cpu") == first  # bytecode is not source
    assert build.digest(tmp_path, "gpu") != first
    (tmp_path / "genlib" / "diffusion" / "samplers.py").write_text("x = 2\n")
    assert build.digest(tmp_path, "cpu") != first
    (tmp_path / "genlib" / "diffusion" / "samplers.py").write_text("x = 1\n")
    (tmp_path / "requirements.txt").write_text("torch==2.5\n")
    assert build.digest(tmp_path, "cpu") != first


def test_a_changed_digest_empties_the_cache_the_environment_and_the_verdicts(tmp_path):
    out, verdicts = tmp_path / "_build", tmp_path / "verdicts"
    for folder in (out / ".jupyter_cache", out / ".doctrees", verdicts):
        folder.mkdir(parents=True)
    (verdicts / "07--schedules.json").write_text("{}")
    assert build.invalidate_if_changed(out, "a", verdicts)  # no saved digest: a first build
    assert not (out / ".jupyter_cache").exists() and not (out / ".doctrees").exists()
    assert not list(verdicts.iterdir())
    (out / ".jupyter_cache").mkdir()
    (verdicts / "07--schedules.json").write_text("{}")
    assert not build.invalidate_if_changed(out, "a", verdicts)  # unchanged: everything kept
    assert (out / ".jupyter_cache").exists() and (verdicts / "07--schedules.json").exists()
    assert build.invalidate_if_changed(out, "b", None)  # changed; verdicts=None keeps them
    assert not (out / ".jupyter_cache").exists() and (verdicts / "07--schedules.json").exists()


def test_every_verdict_uses_its_pages_chapter_id():
    """Verdicts and records name a page by ``build.chapter_id`` (07, C, D): a partial build's
    summary and chapter 15's table find them only so."""
    ids = {build.chapter_id(p) for p in build.toc_pages()}
    from genlib import verdicts

    used = {c for c, _, _ in verdicts.expected()}
    assert used <= ids, f"verdicts under chapter ids no page has: {sorted(used - ids)}"
    assert build.chapter_id("chapters/appD_samplers") == "D" and build.chapter_id("chapters/07_ddpm") == "07"


def test_the_plan_names_each_page_its_source_and_time():
    lines = progress.plan_lines(["book/intro", "chapters/07_ddpm", "chapters/appD_samplers", "chapters/08_latent"],
                                cached={"chapters/appD_samplers"}, times={"07_ddpm": 127.0},
                                provenance="on a 2-core Xeon, 2026-12-07", profile_name="cpu")
    assert lines[0] == "genlib book build, profile cpu: 3 page(s) to execute or read from the cache"
    assert "07_ddpm" in lines[1] and "about 2.1 min" in lines[1]
    assert "execution cache" in lines[2] and "no measured time" in lines[3]
    assert lines[-1].strip().startswith("2 page(s) run: about 2.1 min plus 1 unmeasured")


def test_measured_times_cover_the_book_in_the_cpu_profile():
    times, provenance = progress.measured("cpu")
    stems = {p.rsplit("/", 1)[1] for p in build.toc_pages()}
    assert provenance and set(times) <= stems and all(t > 0 for t in times.values())
    missing = stems - set(times)
    assert missing <= {"15_conclusion", "appE_kernels"}, f"no measured cpu time for {sorted(missing)}"


def test_the_conclusion_always_runs():
    """It gathers the other pages' verdicts: never served from the cache, always re-read."""
    text = (ROOT / "chapters" / "15_conclusion.md").read_text()
    front = text.split("---", 2)[1]
    import yaml

    assert yaml.safe_load(front)["mystnb"]["execution_mode"] == "force"
    source = ast.parse((ROOT / "book" / "_ext" / "build_progress.py").read_text())
    assert "chapters/15_conclusion" in ast.unparse(source)


@pytest.mark.slow
def test_a_one_page_build_runs_it_once_then_serves_it_from_the_cache(tmp_path):
    """`make book PAGES=...`, twice: the second build reads the page from the execution cache."""
    env = dict(os.environ, GENLIB_PROFILE="ci", GENLIB_STATIC="1", GENLIB_VERDICTS=str(tmp_path / "verdicts"))
    env.pop("MPLBACKEND", None)
    cmd = [sys.executable, str(ROOT / "book" / "build.py"), "--pages", "appA", "--out", str(tmp_path)]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert "appA_building_blocks       runs" in first.stdout and "[1/1] chapters/appA_building_blocks" in first.stdout
    assert (tmp_path / "_build" / "html" / "chapters" / "appA_building_blocks.html").exists()
    assert not (tmp_path / "_build" / "html" / "chapters" / "07_ddpm.html").exists()
    page = (tmp_path / "_build" / "html" / "chapters" / "appA_building_blocks.html").read_text()
    assert 'href="../_notebooks/appA_building_blocks.ipynb" download' in page  # the executed notebook
    assert (tmp_path / "_build" / "html" / "_notebooks" / "appA_building_blocks.ipynb").exists()
    os.utime(ROOT / "chapters" / "appA_building_blocks.md")  # Sphinx re-reads it; the cache serves it
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    assert "appA_building_blocks       outputs from the execution cache" in second.stdout
    assert "Executing notebook" not in second.stdout + second.stderr
    shutil.rmtree(tmp_path / "_build", ignore_errors=True)
