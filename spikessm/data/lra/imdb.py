"""Text (LRA): IMDb movie-review sentiment read byte by byte (2 classes, up to 4K bytes).

Layout ``aclImdb/{train,test}/{pos,neg}/*.txt`` (the Stanford release; ``train/unsup`` is ignored).
Each review's UTF-8 bytes are its tokens, id = byte + 2 after ``<pad>`` and ``<unk>`` (the numbering of
LRA's ``ByteTextEncoder``), truncated to ``l_max`` = 4096 as in the LRA paper (S4 instead builds a
character vocabulary). IMDb has no validation split: by default we hold out a seeded 10% of train;
``val_fraction=0`` uses the test set as validation like LRA and S4.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikessm.data.cache import cached
from spikessm.data.collate import pad_collate
from spikessm.data.common import (BYTE_OFFSET, BYTE_VOCAB_NOTE, BYTE_VOCAB_SIZE, TokenSequences, find_data,
                                  check_packed, hold_out_val, pack)
from spikessm.data.base import Splits, Task, builtin

SENTIMENTS = ("neg", "pos")  # label = index
SOURCE = ("Get aclImdb_v1.tar.gz from https://ai.stanford.edu/~amaas/data/sentiment/ and extract it "
          "into the data directory.")


def read_reviews(split_dir: Path, l_max: int) -> dict:
    files = [(label, path) for label, sentiment in enumerate(SENTIMENTS)
             for path in sorted((split_dir / sentiment).glob("*.txt"))]
    sequences = [np.frombuffer(path.read_bytes()[:l_max], np.uint8) for _, path in files]
    return pack(sequences, [label for label, _ in files])


def load_text(options: dict, data_dir: Path | None) -> Splits:
    l_max = int(options["l_max"])
    required = [f"{split}/{sentiment}/*.txt" for split in ("train", "test") for sentiment in SENTIMENTS]
    folder = find_data("text", data_dir, [("aclImdb", required)], SOURCE)
    sources = [path for pattern in required for path in folder.glob(pattern)]
    data = cached("text", folder, sources, {"l_max": l_max},
                  lambda: {split: read_reviews(folder / split, l_max) for split in ("train", "test")},
                  validate=lambda data: [check_packed(data[split], 2) for split in ("train", "test")])
    train, test = (TokenSequences(data[split], id_offset=BYTE_OFFSET) for split in ("train", "test"))
    train, val, how = hold_out_val(train, test, float(options["val_fraction"]), int(options["split_seed"]))
    return Splits(train, val, test, n_classes=2, vocab_size=BYTE_VOCAB_SIZE, collate=pad_collate,
                  info={"vocab": BYTE_VOCAB_NOTE, "val": how, "source": str(folder)})


builtin(Task("text", "LRA Text: IMDb sentiment at byte level, token ids", 4096, 2, "classify", load_text,
              options={"l_max": 4096, "val_fraction": 0.1, "split_seed": 42}, needs_data_dir=True,
              vocab_size=BYTE_VOCAB_SIZE))
