r"""Language modelling: WikiText-103 (words), and ``chars`` and ``words`` on any UTF-8 text file.

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
- ``words``: ``--set data.path=FILE``; each line is cut into words and punctuation marks
  (``\w+|[^\w\s]``: "earth." -> "earth", "."), lowercased unless ``data.lowercase=false``, and ends
  with ``<eos>``; blank lines give nothing. The first 90% of the non-blank lines train, the next 5%
  validate, the last 5% test. Vocabulary from train as ``wikitext103``'s (``<pad>``, ``<unk>``,
  ``<eos>``, then by decreasing frequency) without the words seen fewer than ``data.min_count`` (2)
  times there; those, and val/test words outside it, become ``<unk>`` (counted per split in
  ``Splits.info``).
"""
from __future__ import annotations

import re
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
TEXT_FRACTIONS = (0.9, 0.05, 0.05)  # chars and words: train, val, test, contiguous parts of the file
WORD = re.compile(r"\w+|[^\w\s]")  # a word, or one punctuation mark


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
    """Chunked splits of ``streams`` (split -> (n,) int32 ids); ``info`` names the data as ``source``."""
    if seq_len < 1:
        raise UserError(f"data.seq_len must be positive, got {seq_len}")
    for split, stream in streams.items():
        if len(stream) <= seq_len:
            raise UserError(f"{info['source']}: the {split} split has {len(stream)} tokens, too few for one "
                            f"chunk of data.seq_len={seq_len} (+1 for the targets); lower data.seq_len")
    return Splits(**{split: LMChunks(stream, seq_len) for split, stream in streams.items()},
                  n_classes=len(vocab), vocab_size=len(vocab), info={"vocab": vocab, **info})


def _frequency_vocab(counts: Counter, min_count: int = 1) -> Vocab:
    """``<pad>``, ``<unk>``, ``<eos>``, then the words counted at least ``min_count`` times, most frequent
    first so that adaptive-softmax cut-offs apply; ties keep the order of first appearance (the
    Counter's insertion order, which the stable sort preserves)."""
    by_frequency = sorted(counts, key=counts.__getitem__, reverse=True)
    return Vocab([word for word in by_frequency if counts[word] >= min_count], specials=(PAD, UNK, EOS))


def _unknown_counts(streams: dict, vocab: Vocab, splits=("val", "test")) -> dict:
    """``<unk>`` tokens in each of ``splits``: words the vocabulary lacks."""
    return {f"unknown_words_{split}": int((streams[split] == vocab.unk).sum()) for split in splits}


def _read_wikitext(folder: Path) -> dict:
    counts = Counter()
    for words in _lines_of_words(folder / WIKITEXT_FILES["train"]):
        counts.update(words)
    vocab = _frequency_vocab(counts)
    streams = {}
    for split, name in WIKITEXT_FILES.items():
        ids = array("i")
        for words in _lines_of_words(folder / name):
            ids.extend(vocab.encode(words))
        streams[split] = torch.from_numpy(np.frombuffer(ids, np.int32).copy())
    return {"streams": streams, "vocab": vocab.itos, "unknown": _unknown_counts(streams, vocab)}


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


def _text_file(task: str, options: dict, data_dir: Path | None) -> Path:
    """``data.path``: absolute, else relative to the data directory if the file is there, else to the
    working directory."""
    if not options.get("path"):
        raise UserError(f"task {task!r} needs a text file: --set data.path=FILE (any UTF-8 text)")
    path = Path(options["path"]).expanduser()
    if not path.is_absolute() and data_dir is not None and (data_dir / path).is_file():
        path = data_dir / path
    if not path.is_file():
        raise UserError(f"task {task!r}: no text file at {path}")
    return path


def load_chars(options: dict, data_dir: Path | None) -> Splits:
    path = _text_file("chars", options, data_dir)
    text = _read_text(path)
    vocab = Vocab(sorted(set(text)), specials=(PAD,))
    stream = torch.tensor(vocab.encode(text), dtype=torch.int32)
    train, val, test = torch.split(stream, split_sizes(len(stream), TEXT_FRACTIONS))
    return _lm_splits({"train": train, "val": val, "test": test}, int(options["seq_len"]), vocab.itos,
                      {"source": str(path), "split": "contiguous 90/5/5"})


def _word_options(options: dict) -> tuple[int, bool]:
    """``data.min_count`` and ``data.lowercase``, checked (the library passes options unchecked)."""
    min_count, lowercase = options["min_count"], options["lowercase"]
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise UserError(f"data.min_count must be an integer >= 1, got {min_count!r}")
    if not isinstance(lowercase, bool):
        raise UserError(f"data.lowercase must be true or false, got {lowercase!r}")
    return min_count, lowercase


def tokenize_lines(text: str, lowercase: bool = True) -> list[list[str]]:
    """The words and punctuation marks of each non-blank line of ``text``, each line ending in ``<eos>``."""
    if lowercase:
        text = text.lower()
    # "\n" only: reading the file already turned "\r\n" and "\r" into it, and splitlines() would also
    # cut at form feeds and other separators that are not line ends in a text file
    return [[*words, EOS] for words in map(WORD.findall, text.split("\n")) if words]


def load_words(options: dict, data_dir: Path | None) -> Splits:
    min_count, lowercase = _word_options(options)
    path = _text_file("words", options, data_dir)
    lines = tokenize_lines(_read_text(path), lowercase)
    if not lines:
        raise UserError(f"{path}: no words in it")
    parts, start = {}, 0
    for split, n in zip(("train", "val", "test"), split_sizes(len(lines), TEXT_FRACTIONS)):
        parts[split] = [word for line in lines[start:start + n] for word in line]
        start += n
    vocab = _frequency_vocab(Counter(parts["train"]), min_count)
    streams = {split: torch.tensor(vocab.encode(words), dtype=torch.int32) for split, words in parts.items()}
    return _lm_splits(streams, int(options["seq_len"]), vocab.itos,
                      {"source": str(path), "split": "contiguous 90/5/5 by lines",
                       **_unknown_counts(streams, vocab, ("train", "val", "test"))})


WIKITEXT_VOCAB = 267735 + 1  # the published vocabulary (words, <unk>, <eos>) and our <pad>
TYPICAL_CHARS = 100  # the chars vocabulary depends on the file; English prose has about this many
TYPICAL_WORDS = 10000  # so does words'; the King James Bible at min_count 2 has 8,164 ids

builtin(Task("wikitext103", "WikiText-103 word-level language modelling", 512, WIKITEXT_VOCAB, "lm",
              load_wikitext103, options={"seq_len": 512}, needs_data_dir=True, vocab_size=WIKITEXT_VOCAB))
builtin(Task("chars", "character-level language modelling on any UTF-8 file (--set data.path=FILE)",
              512, TYPICAL_CHARS, "lm", load_chars, options={"seq_len": 512, "path": ""},
              vocab_size=TYPICAL_CHARS, char_level=True))
builtin(Task("words", "word-level language modelling on any UTF-8 file (--set data.path=FILE)",
              512, TYPICAL_WORDS, "lm", load_words,
              options={"seq_len": 512, "path": "", "min_count": 2, "lowercase": True}, vocab_size=TYPICAL_WORDS))
