"""genlib: the small PyTorch library the chapters of the book import.

Floors (imports only go down): ``config`` -> ``data``, ``kernels``, ``zoo``, ``train`` ->
``nn``, ``diffusion`` -> ``models``, ``metrics``; ``viz`` stands apart.
"""

__version__ = "0.1.0"
