"""Long Range Arena (Tay et al., ICLR 2021) tasks, read from the released file layouts.

One module per task; importing this package registers ``listops``, ``text``, ``retrieval``, ``image``,
``pathfinder`` and ``pathx``. The release is ``lra_release.gz`` (linked from the README of
https://github.com/google-research/long-range-arena); IMDb and CIFAR-10 come from their own sites.
"""
from spikessm.data.lra import image, imdb, listops, pathfinder, retrieval  # noqa: F401
