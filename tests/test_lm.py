"""Language-model heads and metrics: the adaptive softmax (loss, perplexity, streaming, energy,
config errors) and bits per character for the ``chars`` task."""
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from spikessm.cli import main
from spikessm.data.collate import stack_collate
from spikessm.data.registry import Splits
from spikessm.data.text import LMChunks
from spikessm.errors import UserError
from spikessm.metrics.energy import layer_operations
from spikessm.models import build_model, model_defaults
from spikessm.train.checkpoint import load_checkpoint
from spikessm.train.config import build_config
from spikessm.train.loop import evaluate, loss_and_hits

# Sonnet 116 (Shakespeare, 1609; public domain), first quatrain: a tiny corpus for the chars task
QUATRAIN = """Let me not to the marriage of true minds
Admit impediments. Love is not love
Which alters when it alteration finds,
Or bends with the remover to remove.
"""

VOCAB, CUTOFFS = 23, [4, 10]  # head: ids 0-3 + 2 clusters; clusters: ids 4-9 and 10-22


def adaptive_model(cutoffs=CUTOFFS, vocab=VOCAB, div_value=2.0):
    torch.manual_seed(0)
    opts = {**model_defaults("s4d"), "d_model": 16, "n_layers": 1, "d_state": 4, "norm": "layer",
            "adaptive_softmax_cutoffs": cutoffs, "adaptive_softmax_div_value": div_value}
    return build_model(opts, Splits(None, None, None, n_classes=vocab, vocab_size=vocab), "lm").double().eval()


def log_probs_by_hand(model, x):
    """(B, L, vocab) log-probabilities from the decoder's weights, written out: the head's
    log-softmax for shortlist ids; a cluster's head entry plus its own log-softmax for the others."""
    h = model.features(x).transpose(1, 2)
    dec = model.decoder
    head = F.log_softmax(h @ dec.head.weight.T, -1)
    parts = [head[..., :CUTOFFS[0]]]
    for i, tail in enumerate(dec.tail):
        project, out = tail[0].weight, tail[1].weight  # (H / div^(i+1), H), (cluster size, H / div^(i+1))
        parts.append(head[..., CUTOFFS[0] + i, None] + F.log_softmax(h @ project.T @ out.T, -1))
    return torch.cat(parts, -1)


def test_adaptive_softmax_loss_is_the_mean_nll_of_the_unpadded_targets():
    model = adaptive_model()
    assert model.decoder.tail[0][0].out_features == 8 and model.decoder.tail[1][0].out_features == 4
    x = torch.randint(1, VOCAB, (3, 12))
    y = torch.arange(36).view(3, 12) % VOCAB  # targets in the head and in both clusters
    lengths = torch.tensor([12, 7, 3])
    with torch.no_grad():
        loss, hits, n = loss_and_hits(model, "lm", x, y, lengths)
        expected = log_probs_by_hand(model, x)
        torch.testing.assert_close(model(x), expected)  # scores are log-probabilities
        torch.testing.assert_close(expected.logsumexp(-1), torch.zeros(3, 12, dtype=torch.float64))
    mask = torch.arange(12) < lengths.unsqueeze(-1)
    assert n == 22
    nll = -expected.gather(-1, y.unsqueeze(-1)).squeeze(-1)[mask]
    torch.testing.assert_close(loss / n, nll.mean())
    assert hits == (expected.argmax(-1) == y)[mask].sum()
    # padding is ignored: other targets there change nothing
    y_padded = y.clone()
    y_padded[~mask] = VOCAB - 1
    with torch.no_grad():
        assert loss_and_hits(model, "lm", x, y_padded, lengths)[0] == loss


def test_adaptive_softmax_trains_and_streams():
    model = adaptive_model().train()
    x, y = torch.randint(1, VOCAB, (2, 10)), torch.randint(0, VOCAB, (2, 10))
    loss, _, n = loss_and_hits(model, "lm", x, y, torch.tensor([10, 10]))
    (loss / n).backward()
    assert model.decoder.head.weight.grad.abs().sum() > 0 and model.encoder.weight.grad.abs().sum() > 0
    model.eval()
    state = model.initial_state(2)
    for t in range(10):
        out, state = model.step(x[:, t], state)
        torch.testing.assert_close(out, model(x)[:, t])


def test_perplexity_is_exp_of_the_mean_loss_and_bpc_its_base_2_form():
    model = adaptive_model()
    stream = torch.randint(1, VOCAB, (5 * 8 + 1,))
    loader = DataLoader(LMChunks(stream, 8), batch_size=2, collate_fn=stack_collate)
    result = evaluate(model, loader, "lm", torch.device("cpu"), char_level=True)
    with torch.no_grad():
        x, y = stream[:-1].view(5, 8), stream[1:].view(5, 8)
        expected = -log_probs_by_hand(model, x).gather(-1, y.unsqueeze(-1)).mean()
    assert result["loss"] == pytest.approx(expected.item(), rel=1e-6)
    assert result["ppl"] == pytest.approx(math.exp(result["loss"]), rel=1e-12)
    assert result["bpc"] == pytest.approx(result["loss"] / math.log(2), rel=1e-12)
    assert "bpc" not in evaluate(model, loader, "lm", torch.device("cpu"))  # words: no bits per character


def test_energy_counts_the_head_and_every_cluster():
    model = adaptive_model()
    rows = {r["layer"]: r for r in layer_operations(model, 10, {})}
    head = 16 * (4 + 2)
    tails = (16 * 8 + 8 * 6) + (16 * 4 + 4 * 13)  # H -> H/2 -> 6 ids; H -> H/4 -> 13 ids
    assert rows["decoder"]["mac"] == 10 * (head + tails)


@pytest.mark.parametrize("cutoffs,needle", [
    ([4, 4], "strictly increasing"), ([10, 4], "strictly increasing"), ([0, 4], "> 0"),
    ([4, VOCAB], f"< the vocabulary size ({VOCAB})"), (["a"], "list of integers"),
])
def test_bad_cutoffs_are_user_errors(cutoffs, needle):
    with pytest.raises(UserError, match="model.adaptive_softmax_cutoffs") as error:
        adaptive_model(cutoffs)
    assert needle in str(error.value)


def test_a_cluster_without_features_is_a_user_error():
    with pytest.raises(UserError, match="leaves the last of 2 clusters no features"):
        adaptive_model(div_value=5.0)  # 16 // 5**2 = 0


def test_config_checks_adaptive_softmax_options():
    cfg = build_config("chars", "s4d", sets=["model.adaptive_softmax_cutoffs=[20, 40]"])
    assert cfg["model"]["adaptive_softmax_cutoffs"] == [20, 40]
    assert build_config("chars", "s4d")["model"]["adaptive_softmax_cutoffs"] == []  # off by default
    assert build_config(preset="spikingssm/wikitext103")["model"]["adaptive_softmax_cutoffs"] == [19997, 39997, 199997]
    for sets, needle in [(["model.adaptive_softmax_cutoffs=[40, 20]"], "strictly increasing"),
                         (["model.adaptive_softmax_div_value=0"], "must be > 0"),
                         (["model.adaptive_softmax_cutoffs=20"], "expected list")]:
        with pytest.raises(UserError, match=needle):
            build_config("chars", "s4d", sets=sets)
    with pytest.raises(UserError, match="for language modelling"):
        build_config("sdigits", "s4d", sets=["model.adaptive_softmax_cutoffs=[5]"])


TINY_CHARS = ["--task", "chars", "--model", "s4d", "--epochs", "1", "--quiet",
              *[f"--set={kv}" for kv in ("data.seq_len=16", "model.d_model=8", "model.n_layers=1",
                                         "model.d_state=4", "train.threads=1")]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "sonnet.txt"
    path.write_text(QUATRAIN * 16)
    return path


def test_chars_run_reports_bits_per_character(corpus, tmp_path, capsys):
    args = [*TINY_CHARS, f"--set=data.path={corpus}", "--set=model.adaptive_softmax_cutoffs=[10]"]
    assert main(["train", *args, "--out", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_bpc"] == pytest.approx(summary["test_loss"] / math.log(2), rel=1e-12)
    assert summary["test_ppl"] == pytest.approx(math.exp(summary["test_loss"]), rel=1e-12)
    assert printed["test_bpc"] == summary["test_bpc"] and "test_ppl" in printed
    row = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert row["val_bpc"] == pytest.approx(row["val_loss"] / math.log(2), rel=1e-12)
    assert summary["energy"]["mac"] > 0
    assert main(["eval", str(tmp_path / "best.pt")]) == 0
    assert f"test bpc {summary['test_bpc']:.4f}" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 0
    assert f"| test bits per character | {summary['test_bpc']:.4f} |" in (tmp_path / "report" / "report.md").read_text()


def test_a_cutoff_past_the_files_vocabulary_exits_2(corpus, tmp_path, capsys):
    vocab = len(set(QUATRAIN)) + 1  # the file's characters and <pad>
    args = [*TINY_CHARS, f"--set=data.path={corpus}", f"--set=model.adaptive_softmax_cutoffs=[{vocab}]"]
    assert main(["train", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"must all be < the vocabulary size ({vocab})" in err[0]


def test_two_processes_train_an_adaptive_softmax_like_one(corpus, tmp_path):
    """A cluster whose only id ('z', once in the text) is absent from most batches gets no gradient
    there; DistributedDataParallel must expect that, and the run must still match one process."""
    text = tmp_path / "rare.txt"
    text.write_text("z" + corpus.read_text())
    vocab = len(set(QUATRAIN)) + 2  # + 'z' + <pad>; 'z' sorts last: the last cluster is {'z'}
    args = [*TINY_CHARS, f"--set=data.path={text}", f"--set=model.adaptive_softmax_cutoffs=[10,{vocab - 1}]",
            "--set=model.d_model=16", "--set=model.norm=layer", "--set=data.train_samples=64"]
    assert main(["train", *args, "--set=train.batch_size=8", "--out", str(tmp_path / "one")]) == 0
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "spikessm", "train", *args, "--set=train.batch_size=4", "--out", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = (load_checkpoint(tmp_path / name / "last.pt")["model"] for name in ("one", "two"))
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=0, msg=key)


def test_stream_runs_a_spiking_language_model_step_by_step(corpus, tmp_path, capsys):
    args = [*TINY_CHARS, f"--set=data.path={corpus}", "--model", "spikingssm"]
    assert main(["train", *args, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["stream", str(tmp_path / "best.pt"), "--count", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    samples = [line for line in lines if line.startswith("sample ")]
    assert len(samples) == 2 and all("100.00% of steps agree with the parallel pass" in s for s in samples)
    assert "model spikingssm" in lines[0] and "16 steps per sequence" in lines[0]
    assert "per-step latency" in lines[-1]


def test_adaptive_softmax_in_pieces_gives_the_same_loss_predictions_and_gradients():
    """Training scores the adaptive softmax ADAPTIVE_CHUNK positions at a time, recomputed in backward."""
    x = torch.randint(1, VOCAB, (3, 12))
    y = torch.arange(36).view(3, 12) % VOCAB
    results = []
    for chunk in (5, 1000):  # pieces of 5 (the last one shorter) against all 36 positions at once
        model = adaptive_model().train()
        model.ADAPTIVE_CHUNK = chunk
        nll, correct = model(x, targets=y)
        nll.sum().backward()
        results.append((nll.detach(), correct, [p.grad.clone() for p in model.parameters()]))
    (nll_a, correct_a, grads_a), (nll_b, correct_b, grads_b) = results
    torch.testing.assert_close(nll_a, nll_b, rtol=1e-12, atol=1e-12)
    assert torch.equal(correct_a, correct_b)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
