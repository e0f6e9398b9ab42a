"""Sequence classification with normkit.torch.LayerNormLSTM vs torch.nn.LSTM.

The data is generated here: each sequence is 50 steps of 8 noisy channels carrying a sine
wave whose frequency (one of 4) is the class, at a random phase and amplitude — the model must
integrate over time to tell the classes apart. The same architecture (a 1-layer LSTM of
hidden size 128 and a linear head on the last output) is trained for a few hundred Adam steps
with torch's nn.LSTM and with normkit's LayerNormLSTM (layer normalization of the gates' and the
cell's pre-activations, Ba et al. 2016), from the same initial weights (from_torch). It prints
both loss curves, the time per training step and the held-out accuracy.

    python examples/ln_lstm_classifier.py [--steps 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import normkit
import normkit.torch as nkt


def make_batch(gen: torch.Generator, batch: int, T: int = 50, channels: int = 8):
    y = torch.randint(0, 4, (batch,), generator=gen)
    t = torch.arange(T, dtype=torch.float32)[None, :, None]
    freq = (0.05 + 0.05 * y.float())[:, None, None]
    phase = 2 * math.pi * torch.rand(batch, 1, channels, generator=gen)
    amp = 0.5 + torch.rand(batch, 1, channels, generator=gen)
    x = amp * torch.sin(2 * math.pi * freq * t + phase)
    x = x + 0.6 * torch.randn(batch, T, channels, generator=gen)
    return x, y


class Classifier(torch.nn.Module):
    def __init__(self, rnn: torch.nn.Module):
        super().__init__()
        self.rnn = rnn
        self.head = torch.nn.Linear(rnn.hidden_size, 4)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def train(model, steps, batch, seed, log_every):
    gen = torch.Generator().manual_seed(seed)  # the same batches for both models
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses, times = [], []
    for step in range(1, steps + 1):
        x, y = make_batch(gen, batch)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        if step % log_every == 0:
            avg = sum(losses[-log_every:]) / log_every
            print(f"    step {step:4d}  loss {avg:.4f}")
    return losses, times


@torch.no_grad()
def accuracy(model, seed=1234, n=2048):
    x, y = make_batch(torch.Generator().manual_seed(seed), n)
    model.eval()
    acc = float((model(x).argmax(-1) == y).float().mean())
    model.train()
    return acc


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        normkit.set_num_threads(args.threads)
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(8, args.hidden, batch_first=True)
    ln_lstm = nkt.LayerNormLSTM.from_torch(lstm)  # same weights, LN gains 1 / shifts 0
    head_state = Classifier(lstm).head.state_dict()
    results = {}
    for name, rnn in (("torch nn.LSTM", lstm), ("normkit LayerNormLSTM", ln_lstm)):
        model = Classifier(rnn)
        model.head.load_state_dict(head_state)
        print(f"{name}:")
        losses, times = train(model, args.steps, args.batch, seed=1, log_every=max(1, args.steps // 6))
        steady = sorted(times[5:])[len(times[5:]) // 2] if len(times) > 5 else times[-1]
        results[name] = (losses, steady, accuracy(model))
    print()
    print(f"{'model':24s} {'final loss':>10s} {'ms / step':>10s} {'accuracy':>9s}")
    for name, (losses, steady, acc) in results.items():
        tail = sum(losses[-20:]) / len(losses[-20:])
        print(f"{name:24s} {tail:10.4f} {steady * 1e3:10.2f} {acc:9.3f}")
    print(f"\n(torch {torch.__version__}, normkit {normkit.__version__}, "
          f"{torch.get_num_threads()} torch threads, {normkit.get_num_threads()} normkit threads; "
          f"BLAS {normkit.cpu_blas_info()})")


if __name__ == "__main__":
    main()
