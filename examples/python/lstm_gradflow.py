"""How far back does a PyTorch LSTM's gradient reach? rnnscope measures every dJ^(i)/dh^(j)
of the model's own weights, exactly, and draws the profile and the influence map.

    pip install ./python torch matplotlib    # matplotlib only for the figure
    python examples/python/lstm_gradflow.py  # prints the profile, writes lstm_gradflow.png
"""

import numpy as np
import torch

import rnnscope

torch.manual_seed(0)
V, T, B = 50, 64, 8
embed, lstm, head = torch.nn.Embedding(V, 32), torch.nn.LSTM(32, 64), torch.nn.Linear(64, V)
model = rnnscope.Model.from_torch(lstm, embedding=embed, decoder=head)  # weights via numpy

tokens = np.random.default_rng(0).integers(0, V, size=(T + 1, B))  # any [T + 1, B] token ids
gf = model.gradflow(tokens[:-1], tokens[1:])  # inputs and next-token targets, [T, B] each
print(gf)
for l in (1, 4, 16, 32, 63):
    print(f"R({l:2}) = {gf.profile[0, l]:.2e}   through the cell state {gf.profile_cell[0, l]:.2e}")
dh, dc = model.hidden_grads(tokens[:-1], tokens[1:])  # dL/dh_t, dL/dc_t: [T, B, H] per layer
print("|dL/dh_t| at t = 0, 32, 63:", np.linalg.norm(dh[0], axis=(1, 2))[[0, 32, 63]])

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("(pip install matplotlib for the figure)")
else:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.semilogy(gf.profile[0], label="R(l) through h")
    a.semilogy(gf.profile_cell[0], label="through c")
    a.set(xlabel="distance l (steps back)", ylabel="R(l)", title="gradient profile")
    a.legend()
    m = np.ma.masked_where(np.tril(np.ones((T, T))) == 0, gf.influence[0])
    im = b.imshow(np.log10(m), cmap="viridis", origin="upper")
    b.set(xlabel="earlier step j", ylabel="target step i", title="log10 mean |dJ(i)/dh(j)|")
    fig.colorbar(im, ax=b)
    fig.tight_layout()
    fig.savefig("lstm_gradflow.png", dpi=120)
    print("wrote lstm_gradflow.png")
