"""The float64 references of SPEC §12's layer-normalized recurrent cells (tests/reference.py),
checked before any kernel uses them: without LN they are torch.nn.LSTM / GRU / RNN exactly
(gate order, weight layout, the two biases, both directions), and their LN behaves as layer
normalization must (invariant to the scale of what it normalizes; per gate when asked)."""

import numpy as np
import pytest

import reference as R

pytestmark = pytest.mark.any_isa


def _torch_seq(torch, kind, I, H, bidirectional, nonlinearity="tanh"):
    torch.manual_seed(0)
    kw = {"nonlinearity": nonlinearity} if kind == "RNN" else {}
    return getattr(torch.nn, kind)(I, H, bidirectional=bidirectional, **kw).double()


def _weights(m, suffix=""):
    g = lambda n: getattr(m, n + "_l0" + suffix).detach().numpy()  # noqa: E731
    return g("weight_ih"), g("weight_hh"), g("bias_ih"), g("bias_hh")


@pytest.mark.parametrize("kind,nonlin", [("LSTM", "tanh"), ("GRU", "tanh"), ("RNN", "tanh"),
                                         ("RNN", "relu")])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_plain_cells_are_torch(kind, nonlin, bidirectional):
    torch = pytest.importorskip("torch")
    T, B, I, H = 5, 3, 4, 6
    m = _torch_seq(torch, kind, I, H, bidirectional, nonlin)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (T, B, I))
    D = 2 if bidirectional else 1
    h0 = rng.normal(0, 0.5, (D, B, H))
    c0 = rng.normal(0, 0.5, (D, B, H))
    with torch.no_grad():
        xt, ht, ct = (torch.from_numpy(a) for a in (x, h0, c0))
        out = m(xt, (ht, ct)) if kind == "LSTM" else m(xt, ht)
    y, hn = out[0].numpy(), out[1]
    outs, finals = [], []
    for d in range(D):
        w_ih, w_hh, b_ih, b_hh = _weights(m, "_reverse" if d else "")
        if kind == "LSTM":
            step = lambda xt_, s: R.ln_lstm_cell(xt_, s[0], s[1], w_ih, w_hh, b_ih + b_hh)  # noqa: E731
            hs, fin = R.rnn_sequence(step, x, (h0[d], c0[d]), reverse=d == 1)
        elif kind == "GRU":
            step = lambda xt_, s: R.ln_gru_cell(xt_, s, w_ih, w_hh, b_ih, b_hh)  # noqa: E731
            hs, fin = R.rnn_sequence(step, x, h0[d], reverse=d == 1)
        else:
            step = lambda xt_, s: R.ln_rnn_cell(xt_, s, w_ih, w_hh, b_ih + b_hh,  # noqa: E731
                                                nonlinearity=nonlin)
            hs, fin = R.rnn_sequence(step, x, h0[d], reverse=d == 1)
        outs.append(hs)
        finals.append(fin)
    np.testing.assert_allclose(np.concatenate(outs, axis=-1), y, rtol=1e-12, atol=1e-12)
    if kind == "LSTM":
        np.testing.assert_allclose(np.stack([f[0] for f in finals]), hn[0].numpy(), atol=1e-12)
        np.testing.assert_allclose(np.stack([f[1] for f in finals]), hn[1].numpy(), atol=1e-12)
    else:
        np.testing.assert_allclose(np.stack(finals), hn.numpy(), atol=1e-12)


def _ln_params(rng, n):
    return rng.normal(1, 0.2, n), rng.normal(0, 0.2, n)


def test_layer_norm_is_scale_invariant_and_per_gate():
    rng = np.random.default_rng(2)
    B, I, H = 3, 5, 4
    x, h, c = rng.normal(0, 1, (B, I)), rng.normal(0, 1, (B, H)), rng.normal(0, 1, (B, H))
    w_ih, w_hh, b = rng.normal(0, 0.5, (4 * H, I)), rng.normal(0, 0.5, (4 * H, H)), rng.normal(0, 0.1, 4 * H)
    ln = {"x": _ln_params(rng, 4 * H), "h": _ln_params(rng, 4 * H), "c": _ln_params(rng, H)}
    ref = R.ln_lstm_cell(x, h, c, w_ih, w_hh, b, ln, eps=0.0)
    # LN over all 4H pre-activations: a common scale of W_ih (or W_hh) changes nothing ...
    for got, want in zip(R.ln_lstm_cell(x, h, c, 3.0 * w_ih, 0.5 * w_hh, b, ln, eps=0.0), ref):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # ... but scaling one gate's rows does, unless each gate is normalized on its own.
    w2 = w_ih.copy()
    w2[H:2 * H] *= 3.0
    assert not np.allclose(R.ln_lstm_cell(x, h, c, w2, w_hh, b, ln, eps=0.0)[0], ref[0])
    pg = R.ln_lstm_cell(x, h, c, w_ih, w_hh, b, ln, eps=0.0, per_gate=True)
    for got, want in zip(R.ln_lstm_cell(x, h, c, w2, w_hh, b, ln, eps=0.0, per_gate=True), pg):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # The cell-state LN sits on the output path only: c' is the un-normalized state.
    _, c2 = ref
    _, c_plain = R.ln_lstm_cell(x, h, c, w_ih, w_hh, b, {"x": ln["x"], "h": ln["h"]}, eps=0.0)
    np.testing.assert_allclose(c2, c_plain, rtol=1e-12)
    # GRU and Elman: the same invariance of their LN.
    wg_ih, wg_hh = rng.normal(0, 0.5, (3 * H, I)), rng.normal(0, 0.5, (3 * H, H))
    lg = {"x": _ln_params(rng, 3 * H), "h": _ln_params(rng, 3 * H)}
    g0 = R.ln_gru_cell(x, h, wg_ih, wg_hh, None, None, lg, eps=0.0)
    np.testing.assert_allclose(R.ln_gru_cell(x, h, 2 * wg_ih, 4 * wg_hh, None, None, lg, eps=0.0),
                               g0, rtol=1e-12, atol=1e-12)
    wr_ih, wr_hh = rng.normal(0, 0.5, (H, I)), rng.normal(0, 0.5, (H, H))
    lr = {"x": _ln_params(rng, H)}
    r0 = R.ln_rnn_cell(x, h, wr_ih, wr_hh, None, lr, eps=0.0)
    np.testing.assert_allclose(R.ln_rnn_cell(x, h, 5 * wr_ih, 5 * wr_hh, None, lr, eps=0.0), r0,
                               rtol=1e-12, atol=1e-12)
    assert not np.allclose(R.ln_rnn_cell(x, h, 5 * wr_ih, wr_hh, None, lr, eps=0.0), r0)


@pytest.mark.parametrize("per_gate", [False, True])
@pytest.mark.parametrize("with_ln", [True, False])
def test_lstm_cell_backward_against_finite_differences(per_gate, with_ln):
    rng = np.random.default_rng(3)
    B, I, H = 2, 3, 4
    args = {"x": rng.normal(0, 1, (B, I)), "h": rng.normal(0, 1, (B, H)),
            "c": rng.normal(0, 1, (B, H)), "w_ih": rng.normal(0, 0.5, (4 * H, I)),
            "w_hh": rng.normal(0, 0.5, (4 * H, H)), "b": rng.normal(0, 0.1, 4 * H)}
    lnp = {"x": _ln_params(rng, 4 * H), "h": _ln_params(rng, 4 * H), "c": _ln_params(rng, H)}
    if with_ln:
        for k in ("x", "h", "c"):
            args["gx" if k == "x" else "g" + k], args["b" + k] = lnp[k]
    ph, pc = rng.normal(0, 1, (B, H)), rng.normal(0, 1, (B, H))

    def ln_of(a):
        return {k: (a["g" + k], a["b" + k]) for k in ("x", "h", "c")} if with_ln else None

    def loss(a):
        h2, c2 = R.ln_lstm_cell(a["x"], a["h"], a["c"], a["w_ih"], a["w_hh"], a["b"], ln_of(a),
                                per_gate=per_gate)
        return float((h2 * ph).sum() + (c2 * pc).sum())

    got = R.ln_lstm_cell_backward(args["x"], args["h"], args["c"], args["w_ih"], args["w_hh"],
                                  args["b"], ln_of(args), ph, pc, per_gate=per_gate)
    names = {k: k for k in ("x", "h", "c", "w_ih", "w_hh", "b")}
    if with_ln:
        names.update({"gx": ("ln_x", 0), "bx": ("ln_x", 1), "gh": ("ln_h", 0),
                      "bh": ("ln_h", 1), "gc": ("ln_c", 0), "bc": ("ln_c", 1)})
    _fd_check(args, loss, got, names)


def _fd_check(args, loss, got, names, step=1e-6):
    for name, where in names.items():
        g = got[where] if isinstance(where, str) else got[where[0]][where[1]]
        fd = np.zeros_like(args[name])
        for idx in np.ndindex(args[name].shape):
            plus = {k: v.copy() for k, v in args.items()}
            minus = {k: v.copy() for k, v in args.items()}
            plus[name][idx] += step
            minus[name][idx] -= step
            fd[idx] = (loss(plus) - loss(minus)) / (2 * step)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("per_gate", [False, True])
@pytest.mark.parametrize("with_ln", [True, False])
def test_gru_cell_backward_against_finite_differences(per_gate, with_ln):
    rng = np.random.default_rng(4)
    B, I, H = 2, 3, 4
    args = {"x": rng.normal(0, 1, (B, I)), "h": rng.normal(0, 1, (B, H)),
            "w_ih": rng.normal(0, 0.5, (3 * H, I)), "w_hh": rng.normal(0, 0.5, (3 * H, H)),
            "b_ih": rng.normal(0, 0.1, 3 * H), "b_hh": rng.normal(0, 0.1, 3 * H)}
    if with_ln:
        for k in ("x", "h"):
            args["g" + k], args["s" + k] = _ln_params(rng, 3 * H)
    proj = rng.normal(0, 1, (B, H))

    def ln_of(a):
        return {k: (a["g" + k], a["s" + k]) for k in ("x", "h")} if with_ln else None

    def loss(a):
        return float((R.ln_gru_cell(a["x"], a["h"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"],
                                    ln_of(a), per_gate=per_gate) * proj).sum())

    got = R.ln_gru_cell_backward(args["x"], args["h"], args["w_ih"], args["w_hh"], args["b_ih"],
                                 args["b_hh"], ln_of(args), proj, per_gate=per_gate)
    names = {k: k for k in ("x", "h", "w_ih", "w_hh", "b_ih", "b_hh")}
    if with_ln:
        names.update({"gx": ("ln_x", 0), "sx": ("ln_x", 1), "gh": ("ln_h", 0),
                      "sh": ("ln_h", 1)})
    _fd_check(args, loss, got, names)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("with_ln", [True, False])
def test_rnn_cell_backward_against_finite_differences(nonlinearity, with_ln):
    rng = np.random.default_rng(5)
    B, I, H = 2, 3, 5
    args = {"x": rng.normal(0, 1, (B, I)), "h": rng.normal(0, 1, (B, H)),
            "w_ih": rng.normal(0, 0.5, (H, I)), "w_hh": rng.normal(0, 0.5, (H, H)),
            "b": rng.normal(0, 0.1, H)}
    if with_ln:
        args["gx"], args["sx"] = _ln_params(rng, H)
    proj = rng.normal(0, 1, (B, H))

    def ln_of(a):
        return {"x": (a["gx"], a["sx"])} if with_ln else None

    def loss(a):
        return float((R.ln_rnn_cell(a["x"], a["h"], a["w_ih"], a["w_hh"], a["b"], ln_of(a),
                                    nonlinearity=nonlinearity) * proj).sum())

    got = R.ln_rnn_cell_backward(args["x"], args["h"], args["w_ih"], args["w_hh"], args["b"],
                                 ln_of(args), proj, nonlinearity=nonlinearity)
    names = {k: k for k in ("x", "h", "w_ih", "w_hh", "b")}
    if with_ln:
        names.update({"gx": ("ln_x", 0), "sx": ("ln_x", 1)})
    _fd_check(args, loss, got, names)
