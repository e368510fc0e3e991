"""Building blocks that learn: the layers the book's models are made of.

One concept per module, imported by its full path (this package imports nothing, so modules can
be added independently):

* :mod:`genlib.nn.embeddings` -- the sinusoidal timestep embedding (survey eq. 15), one pinned
  convention, and the small MLP that follows it.
* :mod:`genlib.nn.norms` -- BatchNorm, LayerNorm, InstanceNorm and GroupNorm written from their
  definition on ``b c h w`` (survey App. C.3, Fig. 88; Appendix A).
* :mod:`genlib.nn.resblock` -- the residual block of diffusion U-Nets: GroupNorm + SiLU (through
  :func:`genlib.kernels.group_norm_silu`), 3x3 convolutions, a timestep embedding added in between.
* :mod:`genlib.nn.attention` -- multi-head self- and cross-attention on tokens ``b n d`` and on
  feature maps ``b c h w`` (through :func:`genlib.kernels.attention`), and axial attention on
  grids ``b h w d``.
* :mod:`genlib.nn.unet` -- the U-Net of DDPM / LDM, sized by a :class:`~genlib.nn.unet.UNetConfig`
  whose presets follow the profile.
* :mod:`genlib.nn.quantize`, :mod:`genlib.nn.convnets` -- vector quantisation and convolutional
  encoders/decoders (chapter 04).
* :mod:`genlib.nn.transformer` -- the pre-norm transformer block and a small GPT (Appendix B).
* :mod:`genlib.nn.discriminator`, :mod:`genlib.nn.perceptual` -- the patch discriminator and the
  perceptual distance of VQ-GAN's first stage (chapter 06).
* :mod:`genlib.nn.video` -- layers on clips ``b c t h w``: 3D and (2+1)D convolutions, spatial,
  temporal, full and axial attention, and their parameter and FLOP counts (chapter 10).

``nn`` stands on ``config`` and ``kernels``; it never imports ``models``.
"""
