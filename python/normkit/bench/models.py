"""``python -m normkit.bench.models``: whole models before and after ``replace_norms``.

Issue 6's model-level check: a training step of a small transformer and sentence-embedding
inference, with torch's norms and with normkit's (``normkit.torch.replace_norms`` on a copy
of the same model: same weights, same inputs), at 1 and 2 threads, same run.

- ``bert-mini train``: a 2-layer BERT (hidden 256, 4 heads, intermediate 1024) built from a
  ``transformers`` config with random weights; one step = forward of the masked-LM loss on a
  16 × 128 batch, backward, SGD update.
- ``minilm infer``: the all-MiniLM-L6-v2 architecture (6 layers, hidden 384, 12 heads,
  intermediate 1536) with random weights, ``torch.inference_mode``, batch 1 × 128 tokens
  (and batch 64 × 128).

No weights are downloaded: the models are built from their configurations. Needs
``transformers`` (not a normkit dependency: ``pip install transformers`` to run this).

Timing: the two variants are sampled in alternation (torch, normkit, torch, ...) so that load
from other processes falls on both alike; the figure is the median sample, ``ratio`` is
normkit / torch (below 1: faster with normkit).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import sys
import time


def _bert_mini(transformers, torch):
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=256, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=1024,
                                  max_position_embeddings=512)
    torch.manual_seed(0)
    return transformers.BertForMaskedLM(cfg), cfg


def _minilm(transformers, torch):
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                                  num_attention_heads=12, intermediate_size=1536,
                                  max_position_embeddings=512)
    torch.manual_seed(0)
    return transformers.BertModel(cfg, add_pooling_layer=False), cfg


def _mlm_loss(torch, model, ids, labels):
    logits = model(input_ids=ids).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             labels.reshape(-1), ignore_index=-100)


def _train_step(torch, model, opt, ids, labels):
    def step():
        opt.zero_grad(set_to_none=True)
        loss = _mlm_loss(torch, model, ids, labels)
        loss.backward()
        opt.step()
        return loss
    return step


def _infer(torch, model, ids, mask):
    def run():
        with torch.inference_mode():
            return model(input_ids=ids, attention_mask=mask).last_hidden_state
    return run


def _compare(fns: dict, rounds: int, min_s: float) -> dict:
    """Median seconds per call of each callable, sampled in alternation."""
    for f in fns.values():  # warm-up: allocator, thread pool, caches
        f()
        f()
    inner = {}
    for k, f in fns.items():
        t0 = time.perf_counter()
        f()
        inner[k] = max(1, int(min_s / max(time.perf_counter() - t0, 1e-6)))
    got = {k: [] for k in fns}
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for k, f in fns.items():
                t0 = time.perf_counter()
                for _ in range(inner[k]):
                    f()
                got[k].append((time.perf_counter() - t0) / inner[k])
    finally:
        if was:
            gc.enable()
    return {k: statistics.median(v) for k, v in got.items()}


def rows(torch, transformers, nkt, quick: bool):
    """(label, torch callable, normkit callable, check) per row; check() returns the largest
    difference between the two variants' outputs (information, not a test)."""
    out = []
    base, cfg = _bert_mini(transformers, torch)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (16, 128), generator=g)
    labels = torch.where(torch.rand(16, 128, generator=g) < 0.15, ids, torch.full_like(ids, -100))
    m_t = base.train()
    m_n = nkt.replace_norms(copy.deepcopy(base)).train()
    n_norms = sum(isinstance(m, nkt.LayerNorm) for m in m_n.modules())
    opt_t = torch.optim.SGD(m_t.parameters(), lr=1e-4)
    opt_n = torch.optim.SGD(m_n.parameters(), lr=1e-4)
    # Dropout draws differ between the copies; the check compares losses without it.
    def check_train(ids=ids, labels=labels, m_t=m_t, m_n=m_n):
        with torch.no_grad():
            a = _mlm_loss(torch, m_t.eval(), ids, labels)
            b = _mlm_loss(torch, m_n.eval(), ids, labels)
        m_t.train(), m_n.train()
        return abs(float(a) - float(b))
    out.append((f"bert-mini train step [16,128] ({n_norms} norms)",
                _train_step(torch, m_t, opt_t, ids, labels),
                _train_step(torch, m_n, opt_n, ids, labels), check_train))

    base, cfg = _minilm(transformers, torch)
    base.eval()
    m_n = nkt.replace_norms(copy.deepcopy(base)).eval()
    for batch in ((1,) if quick else (1, 64)):
        ids = torch.randint(0, cfg.vocab_size, (batch, 128), generator=g)
        mask = torch.ones_like(ids)
        f_t, f_n = _infer(torch, base, ids, mask), _infer(torch, m_n, ids, mask)
        out.append((f"minilm inference [{batch},128]", f_t, f_n,
                    lambda f_t=f_t, f_n=f_n: float((f_t() - f_n()).abs().max())))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m normkit.bench.models", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2", help="comma list of thread counts (default 1,2)")
    p.add_argument("--rounds", type=int, default=15, help="alternating samples per variant")
    p.add_argument("--sample-s", type=float, default=0.3, help="length of one sample")
    p.add_argument("--quick", action="store_true", help="batch 1 inference only, 7 rounds")
    args = p.parse_args(argv)
    try:
        import transformers
    except ImportError:
        print("normkit.bench.models needs transformers (pip install transformers)", file=sys.stderr)
        return 2
    import torch

    import normkit as nk
    import normkit.torch as nkt

    transformers.logging.set_verbosity_error()
    rounds = 7 if args.quick else args.rounds
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, normkit "
          f"{nk.__version__} ({nk.cpu_isa()}), float32 CPU; medians of {rounds} alternating "
          f"samples of ~{args.sample_s:.1f} s")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"note: load average {load:.1f} at start: other processes share these cores")
    print(f"{'row':44s} {'threads':>7s} {'torch ms':>10s} {'normkit ms':>11s} {'ratio':>7s} "
          f"{'max diff':>9s}")
    table = rows(torch, transformers, nkt, args.quick)
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        nk.set_num_threads(threads)
        for label, f_t, f_n, check in table:
            med = _compare({"torch": f_t, "normkit": f_n}, rounds, args.sample_s)
            t, n = med["torch"] * 1e3, med["normkit"] * 1e3
            print(f"{label:44s} {threads:7d} {t:10.2f} {n:11.2f} {n / t:7.2f} {check():9.2e}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
