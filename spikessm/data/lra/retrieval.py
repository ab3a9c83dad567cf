"""Retrieval (LRA): do two ACL Anthology papers cite each other? (AAN; 2 classes, 4K bytes per paper).

Files ``new_aan_pairs.{train,eval,test}.tsv``: no header, five tab-separated fields ``label, id1, id2,
text1, text2``; the label is written as a float (``1.0``) and read as float then int, as LRA does.
Quotes are not special (LRA reads with ``use_quote_delim=False``), so we split raw bytes on tabs.
Both documents are byte-level like :mod:`~spikessm.data.lra.imdb`, each truncated to ``l_max`` = 4000
(LRA); a sample's x is the pair ``(ids_1, ids_2)``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikessm.data.cache import cached
from spikessm.data.collate import pad_collate
from spikessm.data.common import (BYTE_OFFSET, BYTE_VOCAB_NOTE, BYTE_VOCAB_SIZE, LRA_SOURCE, TokenSequences,
                                  bad_line, check_packed, find_data, pack)
from spikessm.data.base import Splits, Task, builtin

FILES = {"train": "new_aan_pairs.train.tsv", "val": "new_aan_pairs.eval.tsv",
         "test": "new_aan_pairs.test.tsv"}


def read_pairs(path: Path, l_max: int) -> dict:
    """Both documents of pair i are packed as sequences 2i and 2i+1."""
    documents, labels = [], []
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            fields = line.rstrip(b"\r\n").split(b"\t")
            if len(fields) != 5:
                raise bad_line(path, number, f"expected 5 tab-separated fields (label, id1, id2, text1, "
                                             f"text2), got {len(fields)}")
            try:
                label = int(float(fields[0]))
            except (ValueError, OverflowError):  # not a number, or inf
                label = None
            if label not in (0, 1):
                raise bad_line(path, number, f"label must be 0 or 1, got {fields[0][:20]!r}")
            documents += [np.frombuffer(text[:l_max], np.uint8) for text in fields[3:]]
            labels.append(label)
    return pack(documents, labels)


def load_retrieval(options: dict, data_dir: Path | None) -> Splits:
    l_max = int(options["l_max"])
    folder = find_data("retrieval", data_dir, [("tsv_data", list(FILES.values())),
                                               ("aan", list(FILES.values()))], LRA_SOURCE)
    data = cached("retrieval", folder, [folder / name for name in FILES.values()], {"l_max": l_max},
                  lambda: {split: read_pairs(folder / name, l_max) for split, name in FILES.items()},
                  validate=lambda data: [check_packed(data[split], 2, docs_per_sample=2) for split in FILES])
    return Splits(
        **{split: TokenSequences(data[split], docs_per_sample=2, id_offset=BYTE_OFFSET) for split in FILES},
        n_classes=2, vocab_size=BYTE_VOCAB_SIZE, collate=pad_collate,
        info={"vocab": BYTE_VOCAB_NOTE, "source": str(folder)},
    )


builtin(Task("retrieval", "LRA Retrieval: AAN citation pairs at byte level, two token-id documents",
              4000, 2, "retrieval", load_retrieval, options={"l_max": 4000}, needs_data_dir=True,
              vocab_size=BYTE_VOCAB_SIZE))
