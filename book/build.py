"""Build the book (``make book``), all of it or some pages, reusing what is still valid.

    python book/build.py                  # every page, into _build/html
    python book/build.py --pages "07 appD"  # those pages only, into _build/pages/_build/html

Pages execute through Jupyter Book's execution cache (``execute_notebooks: cache``): a page whose
code did not change since the last build is not run again. The cache keys on a page's own code
only, so this script keeps a digest of everything else a page's outputs depend on (genlib's
source, the requirements, the profile); when it changes, the cache, Sphinx's saved environment
and this build's verdicts are emptied and every page runs again. ``--pages`` builds the named
pages (prefixes of ``chapters/*.md``, as in ``benchmarks/run_chapter.py``) with the introduction,
in a separate output folder so the full book stays whole. After the build, one line sums up the
verdicts (a failed invariant stops its page and the build before that).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from genlib import config  # noqa: E402
DIGEST_INPUTS = ("genlib", "requirements.txt", "pyproject.toml")  # what executed outputs depend on


def digest(root: Path = ROOT, profile_name: str | None = None) -> str:
    """A digest of what a page's outputs depend on besides its own code: every file under
    ``DIGEST_INPUTS`` (bytecode caches aside), the profile and ``GENLIB_STATIC``."""
    h = hashlib.sha256()
    for name in DIGEST_INPUTS:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for p in files:
            if "__pycache__" in p.parts or p.suffix == ".pyc" or not p.exists():
                continue
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(f"profile={profile_name or config.profile()};static={os.environ.get('GENLIB_STATIC', '1')}".encode())
    return h.hexdigest()


def toc_pages(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """The chapter files of the table of contents, in order (``chapters/07_ddpm``, ...); the
    back matter (``book/references``), which runs no code, is not among them."""
    data = yaml.safe_load(toc.read_text(encoding="utf-8"))
    return [c["file"] for part in data.get("parts", []) for c in part.get("chapters", [])
            if c["file"].startswith("chapters/")]


def select(pages: list[str], wanted: list[str]) -> list[str]:
    """The pages whose file name starts with one of ``wanted`` (``07``, ``appD``, ``03_vae``), in
    book order; ``ValueError`` naming the choices for a prefix that matches none."""
    chosen = []
    for w in wanted:
        hits = [p for p in pages if p.rsplit("/", 1)[1].startswith(w)]
        if not hits:
            names = ", ".join(p.rsplit("/", 1)[1] for p in pages)
            raise ValueError(f"no page starts with {w!r}; the pages are: {names}")
        chosen += hits
    return [p for p in pages if p in set(chosen)]


def chapter_id(page: str) -> str:
    """The chapter name verdicts and records use: ``chapters/07_ddpm`` -> ``07``, ``chapters/appD_samplers`` -> ``D``."""
    head = page.rsplit("/", 1)[1].split("_", 1)[0]
    return head[3:] if head.startswith("app") else head


def partial_toc(pages: list[str], dest: Path, toc: Path = ROOT / "_toc.yml") -> Path:
    """A table of contents with the book's root page, ``pages`` and the back matter (the references
    page, which the pages' citations need and which runs no code), written to ``dest``."""
    data = yaml.safe_load(toc.read_text(encoding="utf-8"))
    parts = []
    for part in data.get("parts", []):
        kept = [c for c in part.get("chapters", []) if c["file"] in pages or not c["file"].startswith("chapters/")]
        if kept:
            parts.append({**part, "chapters": kept})
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump({**data, "parts": parts}, sort_keys=False), encoding="utf-8")
    return dest


def invalidate_if_changed(build: Path, current: str, verdicts: Path | None) -> bool:
    """Empty the execution cache, Sphinx's environment and (``verdicts``) this build's verdicts
    when ``current`` differs from the digest saved in ``build``; save ``current``. True if emptied."""
    saved = build / ".genlib-digest"
    if saved.exists() and saved.read_text().strip() == current:
        return False
    for name in (".jupyter_cache", ".doctrees"):
        shutil.rmtree(build / name, ignore_errors=True)
    if verdicts is not None and verdicts.is_dir():
        for p in verdicts.glob("*--*.json"):
            p.unlink()
    build.mkdir(parents=True, exist_ok=True)
    saved.write_text(current + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", default=os.environ.get("PAGES", ""),
                        help='page name prefixes, e.g. "07 appD" (default: the whole book)')
    parser.add_argument("--out", default="", help="output folder (default: the repository, or _build/pages "
                        "with --pages); the book lands in OUT/_build/html")
    args = parser.parse_args(argv)
    wanted = args.pages.split()
    name = config.profile()
    try:
        pages = select(toc_pages(), wanted) if wanted else toc_pages()
    except ValueError as e:
        print(f"make book: {e}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve() if args.out else ROOT / "_build" / "pages" if wanted else ROOT
    build = out / "_build"
    from genlib import verdicts

    if invalidate_if_changed(build, digest(profile_name=name), None if wanted else verdicts.store()):
        print(f"genlib, the requirements or the profile ({name}) changed since the last build (or there was "
              "none): every page runs")
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "-W", "-n", "--keep-going"]
    if wanted:
        cmd += ["--toc", str(partial_toc(pages, build / "_toc.yml"))]
    if out != ROOT:
        cmd += ["--path-output", str(out)]
    env = dict(os.environ, GENLIB_STATIC=os.environ.get("GENLIB_STATIC", "1"), GENLIB_PROFILE=name,
               GENLIB_PARTIAL_BUILD="1" if wanted else "0")
    run = subprocess.run(cmd, cwd=ROOT, env=env)
    if run.returncode:
        return run.returncode
    print(f"Built {len(pages)} page(s) into {build / 'html'}.")
    # with --pages, this build's pages only: the others' saved verdicts may be older
    shown = verdicts.summary(chapters={chapter_id(p) for p in pages} if wanted else None)
    print(f"Every invariant held (a failed one stops its page). Verdicts: {shown}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
