"""ListOps: evaluate a nested list of MIN/MAX/MED/SM operations on digits (10 classes, up to 2K tokens).

Files ``basic_{train,val,test}.tsv`` with the header ``Source<TAB>Target``; a source looks like
``( ( ( [MAX 2 ) 9 ) ] )``. Tokens as LRA (``listops/input_pipeline.py``) and S4 (``ListOps`` dataset):
``]`` becomes ``X`` and parentheses are dropped (they only encode the generator's binary nesting),
leaving ``[MAX 2 9 X``. Vocabulary: ``<pad>`` = 0, ``<unk>`` = 1, then the 15 tokens below. S4 also
appends ``<eos>``; we do not, so sequences are exactly the expression.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikessm.data.cache import cached
from spikessm.data.collate import pad_collate
from spikessm.data.common import LRA_SOURCE, TokenSequences, Vocab, bad_line, check_packed, find_data, pack
from spikessm.data.base import Splits, Task, builtin
from spikessm.errors import UserError

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
VOCAB = Vocab([*OPERATORS, "X", *map(str, range(10))])
FILES = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}
HEADER = "Source\tTarget"
LABELS = frozenset("0123456789")


def tokenize(source: str) -> list[str]:
    """``"( ( [MAX 2 ) 9 ] )"`` -> ``["[MAX", "2", "9", "X"]``."""
    return source.replace("]", "X").replace("(", "").replace(")", "").split()


def decode_line(path: Path, number: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_line(path, number, "not UTF-8 text (is it a ListOps .tsv file?)") from None


def read_listops_tsv(path: Path, l_max: int) -> dict:
    """Tokenise one split; sequences longer than ``l_max`` are truncated (counted in ``truncated``)."""
    sequences, labels, truncated, unknown = [], [], 0, 0
    if not path.is_file():
        raise UserError(f"{path}: not a file (a ListOps split is a .tsv file)")
    with open(path, "rb") as f:  # decoded line by line, so that an error names its line
        lines = (decode_line(path, number, raw) for number, raw in enumerate(f, start=1))
        header = next(lines, "").rstrip("\r\n")
        if header != HEADER:
            raise bad_line(path, 1, f"expected the header 'Source<TAB>Target', got {header!r}")
        for number, line in enumerate(lines, start=2):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 2 or fields[1] not in LABELS:
                raise bad_line(path, number, "expected '<expression><TAB><digit 0-9>'")
            ids = VOCAB.encode(tokenize(fields[0]))
            unknown += ids.count(VOCAB.unk)
            truncated += len(ids) > l_max
            sequences.append(np.array(ids[:l_max], np.uint8))
            labels.append(int(fields[1]))
    return {**pack(sequences, labels), "truncated": truncated, "unknown_tokens": unknown}


def load_listops(options: dict, data_dir: Path | None) -> Splits:
    l_max = int(options["l_max"])
    folder = find_data("listops", data_dir, [("listops-1000", list(FILES.values())),
                                             ("listops", list(FILES.values()))], LRA_SOURCE)
    data = cached("listops", folder, [folder / name for name in FILES.values()], {"l_max": l_max},
                  lambda: {split: read_listops_tsv(folder / name, l_max) for split, name in FILES.items()},
                  validate=lambda data: [(check_packed(data[split], 10, vocab_size=len(VOCAB)),
                                          int(data[split]["truncated"]), int(data[split]["unknown_tokens"]))
                                         for split in FILES])
    return Splits(
        **{split: TokenSequences(data[split]) for split in FILES},
        n_classes=10, vocab_size=len(VOCAB), collate=pad_collate,
        info={"vocab": VOCAB.itos, "source": str(folder),
              **{f"{key}_{split}": data[split][key] for split in FILES
                 for key in ("truncated", "unknown_tokens") if data[split][key]}},
    )


builtin(Task("listops", "LRA ListOps: nested MIN/MAX/MED/SM expressions, token ids", 2048, 10,
              "classify", load_listops, options={"l_max": 2048}, needs_data_dir=True, vocab_size=len(VOCAB)))
