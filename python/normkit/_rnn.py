"""The layer-normalized recurrent networks (SPEC §12): LN-LSTM, LN-GRU and LN-Elman (tanh or
relu) sequences and cells, forward and backprop through time, on the CPU with OpenBLAS.

Each family is declared once below (``LSTM`` / ``LSTM_BWD``, ``GRU`` / ``GRU_BWD``,
``RNN`` / ``RNN_BWD``: one layer in one direction over a whole sequence); the functional API
allocates through those declarations and ``normkit.torch`` registers them as custom ops with
autograd through our BPTT kernels (``normkit.torch.LayerNormLSTM`` and friends stack them into
multi-layer, bidirectional networks). A cell is the sequence op with T = 1.

Layouts follow ``torch.nn.LSTM`` / ``GRU`` / ``RNN``: x is ``(T, B, input_size)`` —
``(B, T, input_size)`` with ``batch_first`` — weights ``w_ih (G·H, input_size)``,
``w_hh (G·H, H)`` with gates in torch's order (LSTM i, f, g, o; GRU r, z, n), biases
``(G·H,)``. LN parameters: LSTM ``ln_x_*``, ``ln_h_*`` ``(4H,)`` and ``ln_c_*`` ``(H,)``;
GRU ``ln_x_*``, ``ln_h_*`` ``(3H,)``; Elman ``ln_x_*`` ``(H,)`` (one LN over the sum). Absent
ones are γ = 1, β = 0. ``per_gate=True`` normalizes each gate's H values separately.

Zoneout (Krueger et al. 2016): in training each unit of h (and, for LSTM, of c) keeps its
previous value with probability ``zoneout``: ``h' = m·h + (1 − m)·h̃`` with m ~ Bernoulli
(``c' = m_c·c + (1 − m_c)·c̃``, h̃ computed from c̃, as in the paper). In evaluation the
paper's expectation is used, ``m = zoneout`` (not the identity). Explicit masks
(``zoneout_mask_h`` / ``_c``, shaped like y, values in [0, 1]) replace the random draw.

The matrix products run on OpenBLAS from the ``scipy-openblas32`` wheel (its symbols are
prefixed, so it cannot clash with NumPy's or torch's BLAS), loaded at the first call; it runs
single-threaded on normkit's own threads (``normkit.set_num_threads``), never a second pool.
float32 and float64; 16-bit data is refused (OpenBLAS has no 16-bit GEMM). On CUDA the products
run on cuBLAS, loaded at run time from the loader path or NVIDIA's nvidia-cublas wheel
(``pip install 'normkit[cuda]'``); a missing cuBLAS is a clear RuntimeError.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from . import _core
from ._arrays import BackwardOut, detach, is_torch, lib_for
from ._registry import Bool, Float, Like, Op, OptionalTensor, Out, Shaped, Tensor

__all__ = [
    "lstm", "gru", "rnn", "lstm_cell", "gru_cell", "rnn_cell",
    "lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward", "rnn_backward",
    "cpu_blas_info", "reserve_size",
    "LSTM", "LSTM_BWD", "GRU", "GRU_BWD", "RNN", "RNN_BWD",
]

CELL_IDS = {"lstm": 0, "gru": 1, "rnn_tanh": 2, "rnn_relu": 3}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}

# ---------------------------------------------------------------------------------------
# The BLAS
# ---------------------------------------------------------------------------------------


def ensure_blas() -> None:
    """Loads OpenBLAS from the scipy-openblas32 wheel into the core, once (a C++ embedder may
    have set another CBLAS already: that one is kept)."""
    if _core.cpu_blas_available():
        return
    try:
        import scipy_openblas32 as sob
    except ImportError:
        raise RuntimeError(
            "normkit's recurrent cells need a BLAS on the CPU: pip install scipy-openblas32 "
            "(a dependency of normkit; it was not found)") from None
    lib_dir = sob.get_lib_dir()
    name = sob.get_library()
    path = os.path.join(lib_dir, f"lib{name}.so")
    if not os.path.exists(path):
        cands = [f for f in os.listdir(lib_dir) if f.startswith(f"lib{name}") and ".so" in f]
        if not cands:
            raise RuntimeError(f"scipy-openblas32: no lib{name}.so in {lib_dir}")
        path = os.path.join(lib_dir, sorted(cands)[0])
    _core.load_cpu_blas(path, "scipy_")


def _wheel_cublas():
    """libcublas from NVIDIA's wheel (``pip install 'normkit[cuda]'``: nvidia-cublas), or None."""
    import glob
    import importlib.util

    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    found = []
    for root in spec.submodule_search_locations:
        for pat in ("cu13/lib/libcublas.so.*", "cublas/lib/libcublas.so.*", "cu12/lib/libcublas.so.*"):
            found += sorted(glob.glob(os.path.join(root, pat)), reverse=True)
    return found[0] if found else None


def ensure_cublas() -> None:
    """Before a GPU call: cuBLAS from the nvidia-cublas wheel when the loader path has none
    (the emulation build's stand-in needs nothing but the CPU BLAS)."""
    if _core.cuda_emulated():
        ensure_blas()
    if _core.cublas_available():
        return
    path = _wheel_cublas()
    if path is not None:
        _core.load_cublas(path)
    # else: the call itself fails with the core's message (what to install)


def cpu_blas_info() -> str:
    """The CPU BLAS the recurrent cells use (loading it if needed), e.g. ``"OpenBLAS 0.3.x
    DYNAMIC_ARCH ... SkylakeX ... (libscipy_openblas.so)"``."""
    ensure_blas()
    return _core.cpu_blas_info()


# ---------------------------------------------------------------------------------------
# The declarations
# ---------------------------------------------------------------------------------------

# Elements of the reserve per (step, batch row) — normkit/rnn.hpp's Note [Reserve layout];
# a test checks this against the core's rnn_reserve_size.
def _reserve_row(family: str, H):
    return {"lstm": 15 * H + 10, "gru": 11 * H + 6, "rnn": 3 * H + 1}[family]


def reserve_size(cell: str, T: int, B: int, H: int) -> int:
    """Elements of the reserve of one layer and direction (``cell``: "lstm", "gru",
    "rnn_tanh" or "rnn_relu")."""
    return _reserve_row("rnn" if cell.startswith("rnn") else cell, H) * T * B


def _tb(t, batch_first):
    """A (B, T, ·) array as the core's (T, B, ·) view."""
    return t.swapaxes(0, 1) if (batch_first and t is not None) else t


def _families():
    """The three families' input lists: (forward inputs, backward-only extras)."""
    return {
        "lstm": dict(states=("h0", "c0"), ln=("ln_x", "ln_h", "ln_c"), masks=("h", "c")),
        "gru": dict(states=("h0",), ln=("ln_x", "ln_h"), masks=("h",)),
        "rnn": dict(states=("h0",), ln=("ln_x",), masks=("h",)),
    }


def _make_kernel(params, body):
    """A function with exactly these positional parameter names (the registry checks them)
    that calls ``body(dict of them)``."""
    src = f"def kernel({', '.join(params)}):\n    return _body(dict({', '.join(f'{p}={p}' for p in params)}))\n"
    g = {"_body": body}
    exec(compile(src, "<normkit rnn kernel>", "exec"), g)
    return g["kernel"]


def _declare(family: str):
    f = _families()[family]
    lstm = family == "lstm"
    elman = family == "rnn"
    ln_names = [f"{p}_{w}" for p in f["ln"] for w in ("weight", "bias")]
    mask_names = [f"zoneout_mask_{m}" for m in f["masks"]]
    const_names = [f"zoneout_{m}" for m in f["masks"]]

    def state_shape(x, batch_first, w_hh):
        return (x.shape[0] if batch_first else x.shape[1], w_hh.shape[1])

    def y_shape(x, w_hh):
        return (x.shape[0], x.shape[1], w_hh.shape[1])

    def reserve_shape(x, w_hh):
        return (_reserve_row(family, w_hh.shape[1]) * x.shape[0] * x.shape[1],)

    scalars = [Bool("batch_first"), Bool("per_gate"), Float("eps"), Bool("reverse")]
    if elman:
        scalars.append(Bool("relu"))
    scalars += [Float(n) for n in const_names]

    def cell_id(a):
        if not elman:
            return CELL_IDS[family]
        return CELL_IDS["rnn_relu" if a["relu"] else "rnn_tanh"]

    def opt(a, name):
        return a.get(name)

    def fwd_body(a):
        ensure_blas()
        if a["stream"]:
            ensure_cublas()
        bf = a["batch_first"]
        _core.rnn_forward(
            cell_id(a), _tb(a["x"], bf), a["h0"], opt(a, "c0"), a["w_ih"], a["w_hh"],
            a["b_ih"], a["b_hh"], a["ln_x_weight"], a["ln_x_bias"], opt(a, "ln_h_weight"),
            opt(a, "ln_h_bias"), opt(a, "ln_c_weight"), opt(a, "ln_c_bias"),
            _tb(a["zoneout_mask_h"], bf), _tb(opt(a, "zoneout_mask_c"), bf), _tb(a["y"], bf),
            a["h_n"], opt(a, "c_n"), a["reserve"], a["per_gate"], a["eps"], a["reverse"],
            a["zoneout_h"], opt(a, "zoneout_c") or 0.0, a["stream"])

    inputs = [Tensor("x", differentiable=True, rows=1)]
    inputs += [OptionalTensor(s, differentiable=True, rows=1) for s in f["states"]]
    inputs += [Tensor("w_ih", differentiable=True, rows=1),
               Tensor("w_hh", differentiable=True, rows=1),
               OptionalTensor("b_ih", differentiable=True, contiguous=True),
               OptionalTensor("b_hh", differentiable=True, contiguous=True)]
    inputs += [OptionalTensor(n, differentiable=True, contiguous=True) for n in ln_names]
    inputs += [OptionalTensor(n, rows=1) for n in mask_names]
    inputs += scalars
    outputs = [Out("y", Shaped("x", y_shape)), Out("h_n", Shaped("x", state_shape))]
    if lstm:
        outputs.append(Out("c_n", Shaped("x", state_shape)))
    outputs.append(Out("reserve", Shaped("x", reserve_shape, stat=False), differentiable=False,
                       backward_only=True))

    # The backward.
    def bwd_body(a):
        ensure_blas()
        if a["stream"]:
            ensure_cublas()
        bf = a["batch_first"]
        _core.rnn_backward(
            cell_id(a), _tb(a["dy"], bf), a["dh_n"], opt(a, "dc_n"), _tb(a["x"], bf),
            a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], a["ln_x_weight"], a["ln_x_bias"],
            opt(a, "ln_h_weight"), opt(a, "ln_h_bias"), opt(a, "ln_c_weight"),
            opt(a, "ln_c_bias"), _tb(a["zoneout_mask_h"], bf), _tb(opt(a, "zoneout_mask_c"), bf),
            a["reserve"], _tb(a["dx"], bf), a["dh0"], opt(a, "dc0"), a["dw_ih"], a["dw_hh"],
            a["db_ih"], a["db_hh"], a["dln_x_weight"], a["dln_x_bias"], opt(a, "dln_h_weight"),
            opt(a, "dln_h_bias"), opt(a, "dln_c_weight"), opt(a, "dln_c_bias"), a["per_gate"],
            a["eps"], a["reverse"], a["zoneout_h"], opt(a, "zoneout_c") or 0.0, a["stream"])

    grads = ["dx"] + [f"d{s}" for s in f["states"]] + ["dw_ih", "dw_hh", "db_ih", "db_hh"] + \
        [f"d{n}" for n in ln_names]
    of = {g: g[1:] for g in grads}
    b_inputs = [Tensor("x", rows=1), OptionalTensor("dy", rows=1),
                OptionalTensor("dh_n", rows=1)]
    if lstm:
        b_inputs.append(OptionalTensor("dc_n", rows=1))
    b_inputs += [OptionalTensor(s, shape_only=True) for s in f["states"]]
    b_inputs += [Tensor("w_ih", rows=1), Tensor("w_hh", rows=1),
                 OptionalTensor("b_ih", shape_only=True), OptionalTensor("b_hh", shape_only=True)]
    for n in ln_names:
        values = n.endswith("weight") or n == "ln_c_bias"
        b_inputs.append(OptionalTensor(n, contiguous=True) if values
                        else OptionalTensor(n, shape_only=True))
    b_inputs += [OptionalTensor(n, rows=1) for n in mask_names]
    b_inputs += [Tensor("reserve", contiguous=True)]
    b_inputs += [Bool("batch_first"), Bool("per_gate"), Float("eps"), Bool("reverse")]
    if elman:
        b_inputs.append(Bool("relu"))
    b_inputs += [Float(n) for n in const_names]
    b_inputs += [Bool(f"need_{g}") for g in grads]
    b_outputs = [Out(g, Like(of[g]), grad_of=of[g]) for g in grads]
    b_names = [i.name for i in b_inputs] + [o.name for o in b_outputs] + ["stream"]
    bwd = Op(f"{family}_seq_bwd", inputs=b_inputs, outputs=b_outputs,
             kernel=_make_kernel(b_names, bwd_body))
    names = [i.name for i in inputs] + [o.name for o in outputs] + ["stream"]
    fwd = Op(f"{family}_seq_fwd", inputs=inputs, outputs=outputs,
             kernel=_make_kernel(names, fwd_body), backward=bwd,
             doc=f"normkit's layer-normalized {family.upper()} over a sequence (SPEC §12).")
    return fwd, bwd


LSTM, LSTM_BWD = _declare("lstm")
GRU, GRU_BWD = _declare("gru")
RNN, RNN_BWD = _declare("rnn")
_OPS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


# ---------------------------------------------------------------------------------------
# The functional API
# ---------------------------------------------------------------------------------------


def _check_prob(p, name):
    if not (isinstance(p, (int, float)) and 0.0 <= float(p) <= 1.0):
        raise ValueError(f"{name}: expected a probability in [0, 1], got {p!r}")
    return float(p)


def _draw_mask(x, y_like_shape, p):
    """A zoneout mask shaped like y: 1 (keep the previous state) with probability p."""
    if is_torch(x):
        torch = sys.modules["torch"]
        return (torch.rand(y_like_shape, device=x.device) < p).to(x.dtype)
    if _on_gpu(x):
        raise ValueError("zoneout: drawing masks for this array library on a GPU is not "
                         "supported: pass zoneout_mask_h (and _c) explicitly, or torch tensors")
    a = np.asarray(np.from_dlpack(x) if not isinstance(x, np.ndarray) else x)
    return (np.random.random(y_like_shape) < p).astype(a.dtype)


def _args(family, x, w_ih, w_hh, b_ih, b_hh, states, ln, masks, batch_first, per_gate, eps,
          reverse, relu, zoneout, training):
    """The declared op's arguments, in order, with zoneout resolved to masks or constants."""
    p = _check_prob(zoneout, "zoneout")
    f = _families()[family]
    H = w_hh.shape[1] if len(w_hh.shape) == 2 else None
    if p > 0.0 and training and any(m is None for m in masks.values()):
        if len(x.shape) != 3 or H is None:
            raise ValueError(f"x: expected 3 dims (seq, batch, input_size), got shape "
                             f"{tuple(x.shape)}" if len(x.shape) != 3 else "w_hh: expected 2 dims")
        shape = (x.shape[0], x.shape[1], H)
        masks = {k: (_draw_mask(x, shape, p) if v is None else v) for k, v in masks.items()}
    const = 0.0 if training else p
    args = [x, *[states.get(s) for s in f["states"]], w_ih, w_hh, b_ih, b_hh]
    args += [ln.get(f"{n}_{w}") for n in f["ln"] for w in ("weight", "bias")]
    args += [masks.get(m) for m in f["masks"]]
    args += [bool(batch_first), bool(per_gate), float(eps), bool(reverse)]
    if family == "rnn":
        args.append(bool(relu))
    args += [const for _ in f["masks"]]
    return args


def _on_gpu(x) -> bool:
    if is_torch(x):
        return x.device.type == "cuda"
    return hasattr(x, "__dlpack_device__") and x.__dlpack_device__()[0] != 1


def _run(family, args, want_reserve):
    x = args[0]
    ensure_blas()
    op = _OPS[family]
    if is_torch(x):
        from .torch import _rnn as trnn

        outs = trnn.TORCH_OPS[family](*args)
        if want_reserve and outs[-1] is None:
            outs = trnn.TORCH_OPS[family].call(args, op.all_want)
        return list(outs)
    lib = lib_for(x)
    args = [detach(a) if not isinstance(a, (bool, float)) else a for a in args]
    want = op.all_want if want_reserve else op.no_grad_want
    return [lib.finish(o) for o in op.run(lib, args, want, lib.stream)]


_SEQ_DOC = """
    x: ``(T, B, input_size)`` (``batch_first``: ``(B, T, input_size)``); ``w_ih``, ``w_hh``,
    ``b_ih``, ``b_hh``: torch's layout and gate order; ``h0`` (and ``c0``): ``(B, H)`` or None
    (zeros); LN parameters by keyword (None: γ = 1, β = 0). ``reverse`` runs the steps from the
    last to the first (a bidirectional layer's backward direction). ``zoneout``: see the
    module docstring (``training`` decides between masks and the expectation). NumPy in, NumPy
    out; torch tensors that require grad record autograd through normkit's BPTT kernels."""


def lstm(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, *, ln_x_weight=None,
         ln_x_bias=None, ln_h_weight=None, ln_h_bias=None, ln_c_weight=None, ln_c_bias=None,
         per_gate=False, eps=1e-5, reverse=False, batch_first=False, zoneout=0.0,
         training=False, zoneout_mask_h=None, zoneout_mask_c=None):
    args = _args("lstm", x, w_ih, w_hh, b_ih, b_hh, {"h0": h0, "c0": c0},
                 dict(ln_x_weight=ln_x_weight, ln_x_bias=ln_x_bias, ln_h_weight=ln_h_weight,
                      ln_h_bias=ln_h_bias, ln_c_weight=ln_c_weight, ln_c_bias=ln_c_bias),
                 {"h": zoneout_mask_h, "c": zoneout_mask_c}, batch_first, per_gate, eps,
                 reverse, False, zoneout, training)
    y, h_n, c_n, _ = _run("lstm", args, False)
    return y, h_n, c_n


lstm.__doc__ = ("LN-LSTM over a sequence (SPEC §12): returns ``(y, h_n, c_n)``, y shaped like "
                "x with H features." + _SEQ_DOC)


def gru(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *, ln_x_weight=None, ln_x_bias=None,
        ln_h_weight=None, ln_h_bias=None, per_gate=False, eps=1e-5, reverse=False,
        batch_first=False, zoneout=0.0, training=False, zoneout_mask_h=None):
    args = _args("gru", x, w_ih, w_hh, b_ih, b_hh, {"h0": h0},
                 dict(ln_x_weight=ln_x_weight, ln_x_bias=ln_x_bias, ln_h_weight=ln_h_weight,
                      ln_h_bias=ln_h_bias), {"h": zoneout_mask_h}, batch_first, per_gate, eps,
                 reverse, False, zoneout, training)
    y, h_n, _ = _run("gru", args, False)
    return y, h_n


gru.__doc__ = "LN-GRU over a sequence (SPEC §12): returns ``(y, h_n)``." + _SEQ_DOC


def rnn(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, *, nonlinearity="tanh", ln_x_weight=None,
        ln_x_bias=None, eps=1e-5, reverse=False, batch_first=False, zoneout=0.0,
        training=False, zoneout_mask_h=None):
    relu = _nonlinearity(nonlinearity)
    args = _args("rnn", x, w_ih, w_hh, b_ih, b_hh, {"h0": h0},
                 dict(ln_x_weight=ln_x_weight, ln_x_bias=ln_x_bias), {"h": zoneout_mask_h},
                 batch_first, False, eps, reverse, relu, zoneout, training)
    y, h_n, _ = _run("rnn", args, False)
    return y, h_n


rnn.__doc__ = ("LN-Elman RNN over a sequence (SPEC §12), ``h' = act(LN(W_ih·x + W_hh·h + b))`` "
               "with ``nonlinearity`` 'tanh' or 'relu': returns ``(y, h_n)``." + _SEQ_DOC)


def _nonlinearity(nl):
    if nl not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nl!r}")
    return nl == "relu"


def _as_step(x, name="x"):
    if len(x.shape) != 2:
        raise ValueError(f"{name}: expected 2 dims (batch, input_size) for a cell, got shape "
                         f"{tuple(x.shape)}")
    return x[None]


def lstm_cell(x, h=None, c=None, w_ih=None, w_hh=None, b_ih=None, b_hh=None, **kw):
    """One LN-LSTM step: x ``(B, input_size)``, h, c ``(B, H)`` (None: zeros) → ``(h', c')``.
    Keywords as :func:`lstm` (LN parameters, per_gate, eps, zoneout, training, masks
    ``(B, H)``)."""
    _require_weights(w_ih, w_hh)
    kw = _cell_masks(kw, ("zoneout_mask_h", "zoneout_mask_c"))
    _, h2, c2 = lstm(_as_step(x), w_ih, w_hh, b_ih, b_hh, h, c, **kw)
    return h2, c2


def gru_cell(x, h=None, w_ih=None, w_hh=None, b_ih=None, b_hh=None, **kw):
    """One LN-GRU step: x ``(B, input_size)``, h ``(B, H)`` → h'. Keywords as :func:`gru`."""
    _require_weights(w_ih, w_hh)
    kw = _cell_masks(kw, ("zoneout_mask_h",))
    return gru(_as_step(x), w_ih, w_hh, b_ih, b_hh, h, **kw)[1]


def rnn_cell(x, h=None, w_ih=None, w_hh=None, b_ih=None, b_hh=None, **kw):
    """One LN-Elman step: x ``(B, input_size)``, h ``(B, H)`` → h'. Keywords as :func:`rnn`."""
    _require_weights(w_ih, w_hh)
    kw = _cell_masks(kw, ("zoneout_mask_h",))
    return rnn(_as_step(x), w_ih, w_hh, b_ih, b_hh, h, **kw)[1]


def _require_weights(w_ih, w_hh):
    if w_ih is None or w_hh is None:
        raise ValueError(f"{'w_ih' if w_ih is None else 'w_hh'}: is required")


def _cell_masks(kw, names):
    if kw.get("batch_first") or kw.get("reverse"):
        raise ValueError("batch_first / reverse: not arguments of a cell")
    out = dict(kw)
    for n in names:
        if out.get(n) is not None:
            out[n] = _as_step(out[n], n)
    return out


# *_forward / *_backward: for users who drive their own autograd.

def _forward(family, x, w_ih, w_hh, b_ih, b_hh, states, ln, masks, kw):
    args = _args(family, x, w_ih, w_hh, b_ih, b_hh, states, ln, masks,
                 kw.get("batch_first", False), kw.get("per_gate", False), kw.get("eps", 1e-5),
                 kw.get("reverse", False), _nonlinearity(kw.get("nonlinearity", "tanh")),
                 kw.get("zoneout", 0.0), kw.get("training", True))
    outs = _run(family, args, True)
    return outs, args


def lstm_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, c0=None, **kw):
    """:func:`lstm` that also returns what the backward needs: ``(y, h_n, c_n, saved)``;
    pass ``saved`` to :func:`lstm_backward` (it holds the reserve and the arguments, masks
    included). ``training`` defaults to True here."""
    ln = {k: kw.pop(k) for k in list(kw) if k.startswith("ln_")}
    masks = {"h": kw.pop("zoneout_mask_h", None), "c": kw.pop("zoneout_mask_c", None)}
    (y, h_n, c_n, reserve), args = _forward("lstm", x, w_ih, w_hh, b_ih, b_hh,
                                            {"h0": h0, "c0": c0}, ln, masks, kw)
    return y, h_n, c_n, _Saved("lstm", args, reserve)


def gru_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, **kw):
    """:func:`gru` returning ``(y, h_n, saved)`` for :func:`gru_backward`."""
    ln = {k: kw.pop(k) for k in list(kw) if k.startswith("ln_")}
    masks = {"h": kw.pop("zoneout_mask_h", None)}
    (y, h_n, reserve), args = _forward("gru", x, w_ih, w_hh, b_ih, b_hh, {"h0": h0}, ln, masks,
                                       kw)
    return y, h_n, _Saved("gru", args, reserve)


def rnn_forward(x, w_ih, w_hh, b_ih=None, b_hh=None, h0=None, **kw):
    """:func:`rnn` returning ``(y, h_n, saved)`` for :func:`rnn_backward`."""
    ln = {k: kw.pop(k) for k in list(kw) if k.startswith("ln_")}
    masks = {"h": kw.pop("zoneout_mask_h", None)}
    (y, h_n, reserve), args = _forward("rnn", x, w_ih, w_hh, b_ih, b_hh, {"h0": h0}, ln, masks,
                                       kw)
    return y, h_n, _Saved("rnn", args, reserve)


class _Saved:
    """What a *_forward call leaves for its backward: the declared op's arguments (masks
    drawn) and the reserve."""

    def __init__(self, family, args, reserve):
        self.family, self.args, self.reserve = family, args, reserve


def _backward(saved, grads, out, fn):
    op = _OPS[saved.family]
    bwd = op.backward
    names = tuple(o.name[1:] for o in bwd.outputs)  # "dx" -> "x", as returned
    if out is not None and not isinstance(out, dict):
        raise TypeError(f"{fn}: out: expected None or a dict of gradient buffers by input "
                        f"name ({', '.join(names)}), got {type(out).__name__}")
    unknown = sorted(set(out or ()) - set(names))
    if unknown:
        raise TypeError(f"{fn}: out: no gradient named {unknown} (names: {', '.join(names)})")
    bo = BackwardOut(fn, None if out is None else tuple(out.get(n) for n in names), names,
                     tuple(grads.values()))
    named = dict(zip(op.input_names, saved.args))
    named["reserve"] = saved.reserve
    named.update(grads)
    for o in bwd.outputs:
        named[f"need_{o.name}"] = True
    args = [named.get(n) for n in bwd.input_names]
    x = named["x"]
    lib = lib_for(x)
    args = [detach(a) if not isinstance(a, (bool, float)) else a for a in args]
    outs = bwd.run(lib, args, tuple(bo.want(n) for n in names), lib.stream)
    return {n: bo.finish(lib, n, g) for n, g in zip(names, outs)}


def lstm_backward(dy, dh_n, dc_n, saved, *, out=None):
    """Gradients of :func:`lstm_forward` given those of y, h_n and c_n (any may be None):
    a dict ``{"x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "ln_x_weight", ...}`` (None
    for an absent input). ``out``: a dict of buffers by those names (any subset) to write
    the gradients into."""
    return _backward(saved, {"dy": dy, "dh_n": dh_n, "dc_n": dc_n}, out, "lstm_backward")


def gru_backward(dy, dh_n, saved, *, out=None):
    """Gradients of :func:`gru_forward` (see :func:`lstm_backward`)."""
    return _backward(saved, {"dy": dy, "dh_n": dh_n}, out, "gru_backward")


def rnn_backward(dy, dh_n, saved, *, out=None):
    """Gradients of :func:`rnn_forward` (see :func:`lstm_backward`)."""
    return _backward(saved, {"dy": dy, "dh_n": dh_n}, out, "rnn_backward")
