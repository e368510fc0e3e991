"""One training config for every diffusion model: the shared fields are checked in one place."""

import ast
import dataclasses
from pathlib import Path

import pytest

from genlib.diffusion.training import DiffusionTraining
from genlib.models import ddpm, dit, imagen, ldm, sr3, video_ldm_image

SHARED = {f.name for f in dataclasses.fields(DiffusionTraining)}


def _configs():
    """Each config's active-profile preset: a valid starting point to break one field of."""
    return {
        ddpm.DDPMConfig: lambda: ddpm.DDPMConfig.preset("shapes"),
        dit.DiTDiffusionConfig: lambda: dit.DiTDiffusionConfig.preset("digits"),
        ldm.LDMConfig: lambda: ldm.LDMConfig.preset(context_dim=16),
        video_ldm_image.ImageLDMConfig: video_ldm_image.ImageLDMConfig.preset,
        imagen.ImagenConfig: imagen.ImagenConfig.preset,
        sr3.SR3Config: sr3.SR3Config.preset,
    }


@pytest.mark.parametrize("cls", list(_configs()), ids=lambda c: c.__name__)
def test_every_diffusion_config_inherits_and_checks_the_shared_fields(cls):
    good = _configs()[cls]()
    assert isinstance(good, cls) and issubclass(cls, DiffusionTraining)
    assert SHARED <= {f.name for f in dataclasses.fields(cls)}
    for bad, match in ((dict(schedule="quadratic"), "schedule"), (dict(prediction_type="score"), "prediction"),
                       (dict(ema_decay=1.5), "ema_decay"), (dict(batch_size=0), "batch_size")):
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(good, **bad)


def test_no_preset_functions_beside_the_classmethods():
    """One preset convention: ``XConfig.preset()`` / ``XTraining.preset()`` classmethods, no
    module-level ``*_preset`` functions or ``for_profile`` constructors."""
    root = Path(__file__).resolve().parents[2] / "genlib"
    found = []
    for path in root.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and (node.name.endswith("preset") or node.name == "for_profile"):
                found.append(f"{path.relative_to(root)}:{node.name}")
            if isinstance(node, ast.ClassDef):
                found += [f"{path.relative_to(root)}:{node.name}.{f.name}" for f in node.body
                          if isinstance(f, ast.FunctionDef) and f.name == "for_profile"]
    assert not found, f"presets outside the XConfig.preset() convention: {found}"
