"""Against torch.autograd, when torch is installed (skipped otherwise): a random nn.LSTM with
nn.Embedding and nn.Linear around it, through from_torch, gives torch's loss and gradients."""

import numpy as np
import pytest

import rnnscope
from conftest import rel_err

torch = pytest.importorskip("torch")


class LanguageModel(torch.nn.Module):
    def __init__(self, cell, vocab, embedding, hidden, layers, proj=0):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, embedding)
        extra = {"proj_size": proj} if proj else {}
        self.rnn = getattr(torch.nn, cell)(embedding, hidden, layers, **extra)
        self.fc = torch.nn.Linear(proj or hidden, vocab)

    def forward(self, x):
        out, _ = self.rnn(self.embed(x))
        return self.fc(out)


@pytest.mark.parametrize("cell,layers,proj", [("LSTM", 2, 0), ("LSTM", 2, 5), ("GRU", 1, 0),
                                              ("RNN", 2, 0)])
def test_from_torch_and_loss_and_grads_match_torch_autograd(cell, layers, proj):
    torch.manual_seed(0)
    V, E, H, T, B = 17, 6, 9, 13, 4
    net = LanguageModel(cell, V, E, H, layers, proj)
    x = torch.randint(0, V, (T, B))
    y = torch.randint(0, V, (T, B))
    loss = torch.nn.functional.cross_entropy(net(x).reshape(-1, V), y.reshape(-1))
    loss.backward()
    want = {k: p.grad.numpy() for k, p in net.named_parameters()}

    model = rnnscope.Model.from_torch(net)  # f32, names embed/rnn/fc found by structure
    got_loss, got = model.loss_and_grads(x.numpy(), y.numpy())
    assert abs(got_loss - loss.item()) <= 1e-4 * loss.item()
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == np.float32
        assert rel_err(got[k], want[k]) <= 1e-4, (k, rel_err(got[k], want[k]))

    # The same modules handed over apart.
    apart = rnnscope.Model.from_torch(net.rnn, embedding=net.embed, decoder=net.fc)
    logits, (h, c) = apart.forward(x.numpy())
    assert rel_err(logits, net(x).detach().numpy()) <= 1e-4
    assert h.shape == (layers, B, proj or H)
    assert (c is None) == (cell != "LSTM") and (c is None or c.shape == (layers, B, H))


def test_hidden_grads_match_torch_retain_grad():
    """dL/dh_t of the top layer of an nn.LSTM (what its fused kernel does not expose), against
    autograd on a step-by-step LSTMCell unrolling of the same weights."""
    torch.manual_seed(1)
    V, E, H, T, B = 11, 5, 7, 8, 3
    emb, lstm, fc = torch.nn.Embedding(V, E), torch.nn.LSTM(E, H), torch.nn.Linear(H, V)
    cell = torch.nn.LSTMCell(E, H)
    with torch.no_grad():
        for n in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]:
            getattr(cell, n).copy_(getattr(lstm, n + "_l0"))
    x = torch.randint(0, V, (T, B))
    y = torch.randint(0, V, (T, B))
    h = torch.zeros(B, H)
    c = torch.zeros(B, H)
    hs, cs = [], []
    for t in range(T):
        h, c = cell(emb(x[t]), (h, c))
        h.retain_grad()
        c.retain_grad()
        hs.append(h)
        cs.append(c)
    logits = fc(torch.stack(hs))
    torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1)).backward()
    model = rnnscope.Model.from_torch(lstm, embedding=emb, decoder=fc, dtype="float64")
    dh, dc = model.hidden_grads(x.numpy(), y.numpy())
    assert rel_err(dh[0], torch.stack([h.grad for h in hs]).numpy()) <= 1e-4
    assert rel_err(dc[0], torch.stack([c.grad for c in cs]).numpy()) <= 1e-4
