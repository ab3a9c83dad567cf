"""Language modelling: wikitext103 and chars, chunked into (x, next tokens)."""
import pickle

import pytest
import torch

from spikessm.data.registry import get_task
from spikessm.errors import UserError

# Sonnet 18 (Shakespeare, 1609; public domain), a tiny corpus for the chars task
SONNET = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see,
So long lives this, and this gives life to thee.
"""


def load(name, data_dir, **options):
    task = get_task(name)
    return task.load({**task.options, **options}, data_dir)


def write_wikitext(root):
    folder = root / "wikitext-103"
    folder.mkdir()
    (folder / "wiki.train.tokens").write_text(" = Cats = \n \n the cat sat on the mat . \n the <unk> sat . \n")
    (folder / "wiki.valid.tokens").write_text(" the dog sat . \n")
    (folder / "wiki.test.tokens").write_text(" the cat sat . \n")


def test_wikitext_vocabulary_eos_and_chunks(tmp_path):
    write_wikitext(tmp_path)
    splits = load("wikitext103", tmp_path, seq_len=4)
    vocab = splits.info["vocab"]
    # specials, then train words by decreasing count, ties in order of first appearance
    assert vocab[:3] == ["<pad>", "<unk>", "<eos>"]
    assert vocab[3:] == ["the", "=", "sat", ".", "Cats", "cat", "on", "mat"]
    assert splits.vocab_size == splits.n_classes == 11
    ids = {word: i for i, word in enumerate(vocab)}
    stream = "= Cats = <eos> <eos> the cat sat on the mat . <eos> the <unk> sat . <eos>".split()
    assert len(splits.train) == (len(stream) - 1) // 4
    for i in range(len(splits.train)):
        x, y = splits.train[i]
        assert x.tolist() == [ids[w] for w in stream[4 * i:4 * i + 4]]
        assert y.tolist() == [ids[w] for w in stream[4 * i + 1:4 * i + 5]]
    x, y = splits.val[0]  # "dog" is not in train: <unk>
    assert x.tolist() == [ids["the"], ids["<unk>"], ids["sat"], ids["."]] and y[-1] == ids["<eos>"]
    assert splits.info["unknown_words_val"] == 1 and splits.info["unknown_words_test"] == 0
    with pytest.raises(IndexError):
        splits.train[len(splits.train)]
    restored = pickle.loads(pickle.dumps(splits.train))  # DataLoader workers get a copy
    assert torch.equal(restored[1][1], splits.train[1][1])


def test_wikitext_missing(tmp_path):
    with pytest.raises(UserError, match=r"wiki\.train\.tokens.*wikitext-103-v1\.zip"):
        load("wikitext103", tmp_path)


def test_wikitext_not_utf8(tmp_path):
    write_wikitext(tmp_path)
    (tmp_path / "wikitext-103" / "wiki.valid.tokens").write_bytes(b"ok\n\xff\xfe bad\n")
    with pytest.raises(UserError, match=r"wiki\.valid\.tokens: not UTF-8"):
        load("wikitext103", tmp_path)


def test_chars_vocabulary_and_contiguous_split(tmp_path):
    corpus = tmp_path / "sonnet.txt"
    corpus.write_text(SONNET)
    splits = load("chars", None, path=str(corpus), seq_len=16)
    vocab = splits.info["vocab"]
    assert vocab[0] == "<pad>" and vocab[1:] == sorted(set(SONNET))
    n = len(SONNET)
    assert len(splits.train) == (n - 2 * round(0.05 * n) - 1) // 16
    x, y = splits.train[1]
    assert "".join(vocab[i] for i in x) == SONNET[16:32] and "".join(vocab[i] for i in y) == SONNET[17:33]
    val_start = n - 2 * round(0.05 * n)
    assert "".join(vocab[i] for i in splits.val[0][0]) == SONNET[val_start:val_start + 16]
    assert splits.vocab_size == len(vocab) and splits.info["split"] == "contiguous 90/5/5"
    relative = load("chars", tmp_path, path="sonnet.txt", seq_len=16)  # relative to the data directory
    assert torch.equal(relative.test[0][0], splits.test[0][0])


def test_chars_errors(tmp_path):
    with pytest.raises(UserError, match="data.path"):
        load("chars", None)
    with pytest.raises(UserError, match="no text file"):
        load("chars", None, path=str(tmp_path / "absent.txt"))
    (tmp_path / "short.txt").write_text("too short for 512 characters per chunk\n" * 20)
    with pytest.raises(UserError, match="val split has 39 tokens, too few"):
        load("chars", None, path=str(tmp_path / "short.txt"))
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(UserError, match="latin1.txt: not UTF-8"):
        load("chars", None, path=str(tmp_path / "latin1.txt"))
