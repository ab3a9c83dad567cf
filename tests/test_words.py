"""The ``words`` task: word-level language modelling on any UTF-8 file (tokens, vocabulary by
frequency, ``<unk>``, the 90/5/5 split by lines, options and errors, a tiny training run)."""
import json

import pytest

from spikessm.cli import main
from spikessm.data.registry import get_task
from spikessm.data.text import tokenize_lines
from spikessm.errors import UserError

# 20 non-blank lines: 18 train, 1 validates, 1 tests (split_sizes(20, (0.9, 0.05, 0.05)) = [18, 1, 1]).
# The blank and whitespace-only lines give no tokens and do not count as lines of the split.
TRAIN = ["The cat sat."] * 8 + [""] + ["The cat sat."] * 8 + ["   ", "Cat, the cat!", "A dog ran."]
VAL, TEST = "The dog sat.", "Cats sat"
TINY = "\n".join([*TRAIN, VAL, TEST]) + "\n"
# Lowercased train counts: cat 16+2, the 16+1, "." 16+1, sat 16; once each: "," "!" a dog ran.
# "the" and "." tie at 17: "the" appears first.
VOCAB = ["<pad>", "<unk>", "<eos>", "cat", "the", ".", "sat"]


def load(data_dir=None, **options):
    task = get_task("words")
    return task.load({**task.options, **options}, data_dir)


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TINY, encoding="utf-8")
    return path


def words_of(splits, dataset):
    """The tokens of a split's chunks, the chunks' x back to back and then the last y."""
    vocab = splits.info["vocab"]
    ids = [int(i) for k in range(len(dataset)) for i in dataset[k][0]] + [int(dataset[len(dataset) - 1][1][-1])]
    return [vocab[i] for i in ids]


def test_tokens_split_into_words_and_punctuation_with_eos_per_line():
    assert tokenize_lines("In the beginning, God created the earth.\n\n  \nLet there be light!") == [
        ["in", "the", "beginning", ",", "god", "created", "the", "earth", ".", "<eos>"],
        ["let", "there", "be", "light", "!", "<eos>"]]
    assert tokenize_lines("Thou art; I'm\n", lowercase=False) == [["Thou", "art", ";", "I", "'", "m", "<eos>"]]
    assert tokenize_lines("<eos>") == [["<", "eos", ">", "<eos>"]]  # text never forges the marker


def test_vocabulary_by_frequency_unk_and_the_line_split(tiny):
    splits = load(path=str(tiny), seq_len=2)
    assert splits.info["vocab"] == VOCAB and splits.vocab_size == splits.n_classes == 7
    train = ["the", "cat", "sat", ".", "<eos>"] * 16 + ["cat", "<unk>", "the", "cat", "<unk>", "<eos>",
                                                       "<unk>", "<unk>", "<unk>", ".", "<eos>"]
    assert len(splits.train) == (len(train) - 1) // 2 == 45
    assert words_of(splits, splits.train) == train[:2 * 45 + 1]
    ids = {word: i for i, word in enumerate(VOCAB)}
    x, y = splits.train[1]  # sample i: x = stream[2i:2i+2], y = the next tokens
    assert x.tolist() == [ids["sat"], ids["."]] and y.tolist() == [ids["."], ids["<eos>"]]
    # "dog" is seen once in train (< min_count 2), "cats" never: both <unk>
    assert words_of(splits, splits.val) == ["the", "<unk>", "sat", ".", "<eos>"]
    assert words_of(splits, splits.test) == ["<unk>", "sat", "<eos>"]
    assert {key: splits.info[key] for key in ("unknown_words_train", "unknown_words_val", "unknown_words_test")} \
        == {"unknown_words_train": 5, "unknown_words_val": 1, "unknown_words_test": 1}
    assert splits.info["source"] == str(tiny) and splits.info["split"] == "contiguous 90/5/5 by lines"


def test_min_count_one_keeps_every_train_word(tiny):
    splits = load(path=str(tiny), seq_len=2, min_count=1)
    assert splits.info["vocab"] == [*VOCAB, ",", "!", "a", "dog", "ran"]  # count 1, by first appearance
    assert splits.info["unknown_words_train"] == 0 and splits.info["unknown_words_val"] == 0
    assert words_of(splits, splits.test) == ["<unk>", "sat", "<eos>"]


def test_lowercase_off_keeps_case(tiny):
    splits = load(path=str(tiny), seq_len=2, lowercase=False)
    # cat 18, "." 17, The 16, sat 16 (The first); "Cat" and "the" once: <unk>
    assert splits.info["vocab"] == ["<pad>", "<unk>", "<eos>", "cat", ".", "The", "sat"]
    assert words_of(splits, splits.test) == ["<unk>", "sat", "<eos>"]
    assert splits.info["unknown_words_train"] == 7


@pytest.mark.parametrize("option, value", [("min_count", 0), ("min_count", 1.5), ("min_count", True),
                                           ("lowercase", "yes"), ("lowercase", 1)])
def test_bad_options_are_one_line_errors(tiny, option, value):
    with pytest.raises(UserError, match=f"^data.{option} must be") as error:
        load(path=str(tiny), **{option: value})
    assert "\n" not in str(error.value)


def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, tiny):
    (tmp_path / "latin1.txt").write_bytes("café au lait\n".encode("latin-1"))
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    cases = [({}, r"^task 'words' needs a text file: --set data.path=FILE"),
             ({"path": str(tmp_path / "absent.txt")}, r"^task 'words': no text file at .*absent\.txt$"),
             ({"path": str(tmp_path / "latin1.txt")}, r"latin1\.txt: not UTF-8"),
             ({"path": str(tmp_path / "blank.txt")}, r"blank\.txt: no words in it$"),
             ({"path": str(tiny)}, r"tiny\.txt: the train split has 91 tokens, too few for one chunk of "
                                   r"data\.seq_len=512")]
    for options, message in cases:
        with pytest.raises(UserError, match=message) as error:
            load(**options)
        assert "\n" not in str(error.value)


def test_cli_lists_describes_and_rejects(tiny, capsys):
    assert main(["tasks"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("words ")]
    assert len(listed) == 1 and "lm" in listed[0] and "[your file]" in listed[0]
    assert main(["data", "info", "words", "--set", f"data.path={tiny}", "--set", "data.seq_len=2",
                 "--set", "data.lowercase=false"]) == 0
    out = capsys.readouterr().out
    assert "vocab     7 token ids: <pad>, <unk>, <eos>, cat, ., The, sat" in out  # "false" is False
    assert "unknown_words_val 1" in out
    assert main(["data", "info", "words", "--set", f"data.path={tiny}", "--set", "data.lowercase=maybe"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lowercase expects a value of type bool" in err[0]


TINY_RUN = ["--task", "words", "--model", "s4d", "--epochs", "1", "--quiet",
            *[f"--set={kv}" for kv in ("data.seq_len=2", "model.d_model=8", "model.n_layers=1",
                                       "model.d_state=4", "train.threads=1")]]


def test_a_tiny_training_run(tiny, tmp_path, capsys):
    assert main(["train", *TINY_RUN, f"--set=data.path={tiny}", "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_ppl"] > 1 and "test_bpc" not in summary  # words: perplexity, no bits per character
    capsys.readouterr()
    assert main(["train", *TINY_RUN, f"--set=data.path={tiny}", "--set=data.min_count=0",
                 "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.min_count" in err[0]
