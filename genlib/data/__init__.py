"""Data worlds: everything offline, generated or shipped by a package.

Images are ``b c h w`` float32 in [-1, 1]; clips are ``b t c h w``. Every sampler is deterministic
for its ``seed``. Worlds: :mod:`shapes` (with :mod:`captions`), :mod:`moving`, :mod:`digits`,
:mod:`photos`, :mod:`toy2d`; loaders for a reader's own data in :mod:`files`.
"""

from . import captions, degrade, digits, files, moving, photos, render, shapes, toy2d
