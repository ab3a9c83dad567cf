"""The sequence model: learning, streaming, and the task heads."""
import pytest
import torch

from spikessm.data.registry import Splits
from spikessm.errors import UserError
from spikessm.models import build_model, model_defaults


def splits(**kw):
    return Splits(train=None, val=None, test=None, **kw)


def small(name="s4d", **over):
    return {**model_defaults(name), "d_model": 16, "n_layers": 2, "d_state": 8, **over}


def stream(model, x):
    state = model.initial_state(x.shape[0])
    for t in range(x.shape[1]):
        out, state = model.step(x[:, t], state)
    return out


def test_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = build_model(small(), splits(n_classes=4, d_input=3), "classify")
    x, y = torch.randn(8, 32, 3), torch.arange(8) % 4
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert (model.eval()(x).argmax(-1) == y).all()


@pytest.mark.parametrize("over", [dict(prenorm=True), dict(prenorm=False), dict(norm="layer"),
                                  dict(pool="last"), dict(norm="none")])
def test_streaming_equals_parallel(over):
    torch.manual_seed(0)
    model = build_model(small(**over), splits(n_classes=5, d_input=2), "classify").double()
    with torch.no_grad():  # non-trivial running statistics, so the eval-mode norm does something
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(3, 40, 2, dtype=torch.float64)
    torch.testing.assert_close(stream(model, x), model(x), rtol=1e-9, atol=1e-9)


def test_language_model_is_causal_and_streams():
    torch.manual_seed(0)
    model = build_model(small(), splits(n_classes=11, vocab_size=11), "lm").double().eval()
    x = torch.randint(0, 11, (2, 30))
    logits = model(x)
    assert logits.shape == (2, 30, 11)
    changed = x.clone()
    changed[:, 20:] = (changed[:, 20:] + 1) % 11
    torch.testing.assert_close(model(changed)[:, :20], logits[:, :20])
    torch.testing.assert_close(stream(model, x), logits[:, -1])


def test_language_model_refuses_bidirectional_blocks():
    with pytest.raises(UserError, match="causal"):
        build_model(small(bidirectional=True), splits(n_classes=5, vocab_size=5), "lm")


def test_retrieval_head_combines_both_documents():
    torch.manual_seed(0)
    model = build_model(small(), splits(n_classes=2, vocab_size=20), "retrieval").eval()
    x = torch.randint(1, 20, (3, 2, 25))
    lengths = torch.tensor([[25, 10], [5, 25], [25, 25]])
    out = model(x, lengths)
    assert out.shape == (3, 2)
    # Tokens past a document's length are padding and must not change the answer.
    padded = x.clone()
    padded[0, 1, 10:] = 0
    padded[1, 0, 5:] = 0
    torch.testing.assert_close(model(padded, lengths), out)
    # Swapping the two documents changes the features (a - b is not symmetric).
    assert not torch.allclose(model(x.flip(1), lengths.flip(1)), out)


def test_mean_pooling_ignores_padding():
    torch.manual_seed(0)
    model = build_model(small(), splits(n_classes=3, vocab_size=9), "classify").eval()
    x = torch.randint(1, 9, (1, 12))
    torch.testing.assert_close(model(torch.cat([x, torch.zeros(1, 5, dtype=torch.long)], 1),
                                     torch.tensor([12])), model(x))
