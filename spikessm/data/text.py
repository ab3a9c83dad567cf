"""Language modelling: WikiText-103 (words) and ``chars`` (characters of any UTF-8 text file).

Each split is one token stream cut into consecutive chunks of ``seq_len`` tokens; sample i is
``x = stream[i*L : (i+1)*L]``, ``y = stream[i*L+1 : (i+1)*L+1]`` (the next tokens). The last partial
chunk is dropped. ``seq_len`` defaults to 512 so that CPU runs stay small; SpikingSSMs trained
WikiText-103 with 8,192.

- ``wikitext103``: ``wikitext-103/wiki.{train,valid,test}.tokens``. Words are split on whitespace and
  every line ends with ``<eos>`` (the convention of PyTorch's word_language_model example and
  Transformer-XL). Vocabulary from train: ``<pad>``, ``<unk>`` (the data already contains it),
  ``<eos>``, then words by decreasing frequency (ties in order of first appearance), so that adaptive
  softmax cut-offs apply; 267,735 entries + ``<pad>``.
- ``chars``: ``--set data.path=FILE``; vocabulary ``<pad>`` then the file's characters sorted by code
  point; the first 90% of the text trains, the next 5% validates, the last 5% tests. Results add
  bits per character (the mean NLL / ln 2) to the perplexity. The ids are not ordered by frequency,
  so adaptive-softmax cut-offs would group characters arbitrarily (with ~100 ids it is not needed).
"""
from __future__ import annotations

from array import array
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from spikessm.data.cache import cached
from spikessm.data.common import PAD, UNK, Vocab, check_tensor, find_data, split_sizes
from spikessm.data.base import Splits, Task, builtin
from spikessm.errors import UserError

EOS = "<eos>"
WIKITEXT_FILES = {"train": "wiki.train.tokens", "val": "wiki.valid.tokens", "test": "wiki.test.tokens"}
WIKITEXT_SOURCE = ("Get wikitext-103-v1.zip (word level, not -raw) from "
                   "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip "
                   "(or the Hugging Face dataset Salesforce/wikitext) and extract it into the data directory.")
CHARS_FRACTIONS = (0.9, 0.05, 0.05)


class LMChunks(Dataset):
    """Consecutive chunks of a token stream: sample i is ``(x (L,), y (L,))`` long, y = x shifted by one."""

    def __init__(self, stream: torch.Tensor, seq_len: int):
        self.stream, self.seq_len = stream, seq_len

    def __len__(self) -> int:
        return max(0, (len(self.stream) - 1) // self.seq_len)

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        chunk = self.stream[i * self.seq_len:(i + 1) * self.seq_len + 1].long()
        return chunk[:-1], chunk[1:]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (bad byte at offset {error.start})") from None


def _lines_of_words(path: Path) -> Iterator[list[str]]:
    """Each line's words followed by ``<eos>``, read lazily (the train file holds 103M words)."""
    with open(path, encoding="utf-8") as f:
        try:
            for line in f:
                yield [*line.split(), EOS]
        except UnicodeDecodeError as error:
            raise UserError(f"{path}: not UTF-8 text ({error.reason})") from None


def _lm_splits(streams: dict, seq_len: int, vocab: list[str], info: dict) -> Splits:
    if seq_len < 1:
        raise UserError(f"data.seq_len must be positive, got {seq_len}")
    for split, stream in streams.items():
        if len(stream) <= seq_len:
            raise UserError(f"the {split} split has {len(stream)} tokens, too few for one chunk of "
                            f"data.seq_len={seq_len} (+1 for the targets); lower data.seq_len")
    return Splits(**{split: LMChunks(stream, seq_len) for split, stream in streams.items()},
                  n_classes=len(vocab), vocab_size=len(vocab), info={"vocab": vocab, **info})


def _read_wikitext(folder: Path) -> dict:
    counts = Counter()
    for words in _lines_of_words(folder / WIKITEXT_FILES["train"]):
        counts.update(words)
    vocab = Vocab(sorted(counts, key=counts.__getitem__, reverse=True), specials=(PAD, UNK, EOS))
    streams = {}
    for split, name in WIKITEXT_FILES.items():
        ids = array("i")
        for words in _lines_of_words(folder / name):
            ids.extend(vocab.encode(words))
        streams[split] = torch.from_numpy(np.frombuffer(ids, np.int32).copy())
    unknown = {f"unknown_words_{split}": int((streams[split] == vocab.unk).sum()) for split in ("val", "test")}
    return {"streams": streams, "vocab": vocab.itos, "unknown": unknown}


def check_wikitext(data) -> None:
    """A ValueError unless ``data`` is what :func:`_read_wikitext` returns."""
    vocab = data["vocab"]
    if not isinstance(vocab, list) or not all(isinstance(word, str) for word in vocab):
        raise ValueError("the vocabulary must be a list of words")
    for split in WIKITEXT_FILES:
        stream = check_tensor(data["streams"][split], f"streams[{split!r}]", torch.int32, 1)
        if len(stream) and (int(stream.min()) < 0 or int(stream.max()) >= len(vocab)):
            raise ValueError(f"token ids of {split} outside the vocabulary")
    if not isinstance(data["unknown"], dict) or not all(isinstance(n, int) for n in data["unknown"].values()):
        raise ValueError("unknown-word counts are malformed")


def load_wikitext103(options: dict, data_dir: Path | None) -> Splits:
    folder = find_data("wikitext103", data_dir, [("wikitext-103", list(WIKITEXT_FILES.values()))],
                       WIKITEXT_SOURCE)
    data = cached("wikitext103", folder, [folder / name for name in WIKITEXT_FILES.values()], {},
                  lambda: _read_wikitext(folder), validate=check_wikitext)
    return _lm_splits(data["streams"], int(options["seq_len"]), data["vocab"],
                      {"source": str(folder), **data["unknown"]})


def load_chars(options: dict, data_dir: Path | None) -> Splits:
    if not options.get("path"):
        raise UserError("task 'chars' needs a text file: --set data.path=FILE (any UTF-8 text)")
    path = Path(options["path"]).expanduser()
    if not path.is_absolute() and data_dir is not None and (data_dir / path).is_file():
        path = data_dir / path
    if not path.is_file():
        raise UserError(f"task 'chars': no text file at {path}")
    text = _read_text(path)
    vocab = Vocab(sorted(set(text)), specials=(PAD,))
    stream = torch.tensor(vocab.encode(text), dtype=torch.int32)
    train, val, test = torch.split(stream, split_sizes(len(stream), CHARS_FRACTIONS))
    return _lm_splits({"train": train, "val": val, "test": test}, int(options["seq_len"]), vocab.itos,
                      {"source": str(path), "split": "contiguous 90/5/5"})


WIKITEXT_VOCAB = 267735 + 1  # the published vocabulary (words, <unk>, <eos>) and our <pad>
TYPICAL_CHARS = 100  # the chars vocabulary depends on the file; English prose has about this many

builtin(Task("wikitext103", "WikiText-103 word-level language modelling", 512, WIKITEXT_VOCAB, "lm",
              load_wikitext103, options={"seq_len": 512}, needs_data_dir=True, vocab_size=WIKITEXT_VOCAB))
builtin(Task("chars", "character-level language modelling on any UTF-8 file (--set data.path=FILE)",
              512, TYPICAL_CHARS, "lm", load_chars, options={"seq_len": 512, "path": ""},
              vocab_size=TYPICAL_CHARS, char_level=True))
