"""One test definition per op: an :class:`OpSpec` for every forward op normkit declares.

A spec names the op's declaration (``normkit._registry.Op``: its inputs, outputs, backward
and torch custom op come from there) and gives what the declaration cannot know: how to make
inputs, the float64 reference forward and backward (``reference.py``, written from SPEC), and
the sample configurations that between them use every feature of the op. ``test_ops.py``
drives every spec through the same checks:

- the reference backward against central finite differences of the reference forward;
- normkit's torch path (custom op, autograd formula, our kernels) against the reference,
  forward and gradients, in float64 and float32;
- ``torch.autograd.gradcheck`` and ``torch.library.opcheck`` of the custom op, and
  ``torch.compile(fullgraph=True)`` of a training step through it;
- the generated ``Op.run`` against the plan interpreter ``Op.run_plans``;
- determinism: 1 and 2 threads and a second run give the same bits, and a row's outputs
  do not depend on the other rows of the batch;
- the benchmark's byte counts (``normkit.bench.cases.bytes_moved``, from the declaration)
  against the count written here.

``test_every_declared_op_has_a_spec`` fails when an op is registered without a spec, so a
new op gets all of the above by adding its entry below. What stays in the family test files
is what is particular to a family (layouts, in place, ``out=``, NaN-padded buffers, odd row
lengths on every ISA and on the CUDA backend, large means, module surfaces).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

import reference as R


@dataclass
class Sample:
    label: str
    args: dict  # the forward declaration's inputs by name: float64 arrays (or None), scalars
    grads: dict  # the incoming gradient of each differentiable output used, float64


@dataclass(frozen=True)
class OpSpec:
    name: str  # normkit's function name
    decl: str  # "module:NAME" of the forward declaration in the normkit package
    # (shape, dtype, seed, variant) -> Sample, or None where the variant does not fit the
    # shape (two normalized dims of a 1-D input)
    make: Callable[[tuple, str, int, object], Optional[Sample]]
    variants: Tuple  # configurations that together use every feature
    fd_shapes: Tuple[tuple, ...]  # small shapes (finite differences, gradcheck)
    big_shape: tuple  # enough rows and work to split over threads and row blocks
    reference: Callable[[dict], dict]  # args -> {output name: float64}
    reference_grads: Callable[[dict, dict], dict]  # (args, grads) -> {input name: gradient}
    # The function of the inputs whose finite differences the backward equals, given the base
    # point's args (default: the forward itself). AdaNorm's backward holds φ = scale·(1 − k·ŷ)
    # constant (SPEC §8), so its gradient is not the forward's.
    fd_forward: Optional[Callable[[dict, dict], dict]] = None
    exact_gradient: bool = True  # False: gradcheck against the forward does not apply
    # False: outputs depend on the whole batch by definition (batch norm's statistics); the
    # thread and run-to-run checks still apply, the batch-prefix one does not.
    batch_invariant: bool = True
    # The op's other declarations without a backward ("module:NAME": batch norm's split
    # phases), tested by the family's own file; listed so the registry check knows them.
    phases: Tuple[str, ...] = ()
    bench: bool = True  # in normkit.bench's OPS
    # Outputs with no reference value (an implementation's saved activations: the RNNs'
    # reserve); the tests check their presence and shape only.
    opaque: Tuple[str, ...] = ()
    run_shape: tuple = (4, 6, 9)  # the generated-run check's shape
    # Bytes moved, closed form (A activation, P parameter, S statistic, e one element).
    traffic: Dict[str, Callable[[int, int, int, int], int]] = field(default_factory=dict)

    def declaration(self, decl: Optional[str] = None):
        import importlib

        mod, attr = (decl or self.decl).split(":")
        return getattr(importlib.import_module(f"normkit.{mod}"), attr)

    def __str__(self):
        return self.name


# ---------------------------------------------------------------------------------------------
# The row norms (SPEC §1–3): reference.py's RowOp machinery
# ---------------------------------------------------------------------------------------------


def _row_make(op_name: str):
    def make(shape, dtype, seed, variant):
        cfg, nd = variant
        if nd > len(shape):
            return None
        op = R.OPS[op_name]
        c = R.make_case(op, shape, nd, dtype, cfg, seed=seed)
        args = {"x": c["x"], "weight": c["weight"], "bias": c["bias"], "eps": c["eps"],
                "normalized_ndim": nd}
        if op.kind == "rms":
            args["weight_offset"] = c["weight_offset"]
        if op.fused:
            args.update(residual=c["residual"], residual_scale=c["residual_scale"],
                        x_bias=c["x_bias"])
        grads = {"y": c["dy"]}
        if op.fused and c["ds"] is not None:
            grads["s"] = c["ds"]
        return Sample(f"{cfg.label()}-nd{nd}", args, grads)

    return make


def _row_case(op, args: dict, grads: dict) -> dict:
    """reference.py's case dict of a sample."""
    return {
        "x": args["x"], "weight": args["weight"], "bias": args["bias"], "eps": args["eps"],
        "nd": args["normalized_ndim"], "weight_offset": args.get("weight_offset", 0.0),
        "residual": args.get("residual"), "residual_scale": args.get("residual_scale", 1.0),
        "x_bias": args.get("x_bias"), "dy": grads.get("y"), "ds": grads.get("s"),
    }


def _row_reference(op_name: str):
    def ref(args):
        op = R.OPS[op_name]
        return R.reference_forward(op, _row_case(op, args, {}), "float64")

    return ref


def _row_reference_grads(op_name: str):
    def ref(args, grads):
        op = R.OPS[op_name]
        case = _row_case(op, args, grads)
        fw = R.reference_forward(op, case, "float64")
        rb = R.reference_backward(op, case, fw["s"] if op.fused else case["x"], fw)
        return {inp: rb[g] for inp, g in R.grad_inputs(op, case)}

    return ref


def _row_variants(op_name: str):
    return tuple((cfg, nd) for nd in (1, 2)
                 for cfg in R.config_variants(R.OPS[op_name], "float64"))


def _row_spec(name: str, decl: str, traffic) -> OpSpec:
    return OpSpec(name, decl, _row_make(name), _row_variants(name), ((3, 5), (2, 2, 3)),
                  (131, 1000), _row_reference(name), _row_reference_grads(name),
                  traffic=traffic)


# ---------------------------------------------------------------------------------------------
# DyT (SPEC §6)
# ---------------------------------------------------------------------------------------------


def _dyt_make(shape, dtype, seed, variant):
    channels_last, weight, bias = variant
    rng = np.random.default_rng(seed)
    c = shape[-1] if channels_last or len(shape) == 1 else shape[1]
    args = {
        "x": R.round_to(rng.normal(0.0, 1.5, shape), dtype),
        "alpha": R.round_to(np.array([0.7]), dtype),
        "weight": R.round_to(rng.normal(1.0, 0.5, (c,)), dtype) if weight else None,
        "bias": R.round_to(rng.normal(0.0, 0.5, (c,)), dtype) if bias else None,
        "channels_last": channels_last,
    }
    label = f"{'last' if channels_last else 'first'}-{'w' if weight else ''}{'b' if bias else ''}"
    return Sample(label, args, {"y": R.round_to(rng.normal(0.0, 1.0, shape), dtype)})


def _dyt_reference(args):
    return {"y": R.dyt_forward(args["x"], args["alpha"], args["weight"], args["bias"],
                               args["channels_last"])}


def _dyt_reference_grads(args, grads):
    dx, da, dw, db = R.dyt_backward(grads["y"], args["x"], args["alpha"], args["weight"],
                                    args["bias"] is not None, args["channels_last"])
    return {"x": dx, "alpha": da, "weight": dw, "bias": db}


# ---------------------------------------------------------------------------------------------
# AdaNorm (SPEC §8)
# ---------------------------------------------------------------------------------------------


def _ada_make(shape, dtype, seed, variant):
    nd, k, scale, eps = variant
    if nd > len(shape):
        return None
    rng = np.random.default_rng(seed)
    args = {"x": R.round_to(0.25 + rng.standard_normal(shape), dtype), "k": k, "scale": scale,
            "eps": eps, "normalized_ndim": nd}
    return Sample(f"nd{nd}-k{k:g}-scale{scale:g}-eps{eps:g}", args,
                  {"y": R.round_to(rng.standard_normal(shape), dtype)})


def _ada_reference(args):
    y, mean, rstd = R.ada_norm_forward(args["x"], args["k"], args["scale"], args["eps"],
                                       args["normalized_ndim"])
    return {"y": y, "mean": mean, "rstd": rstd}


def _ada_reference_grads(args, grads):
    return {"x": R.ada_norm_backward(grads["y"], args["x"], args["k"], args["scale"],
                                     args["eps"], args["normalized_ndim"])}


def _ada_fd_forward(args, base):
    # y = φ₀·ŷ(x) with φ₀ = scale·(1 − k·ŷ) at the base point (the paper's gradient stop).
    nd, eps = args["normalized_ndim"], args["eps"]
    yh0 = R.ada_norm_forward(base["x"], 0.0, 1.0, eps, nd)[0]
    phi0 = base["scale"] * (1.0 - base["k"] * yh0)
    return {"y": phi0 * R.ada_norm_forward(args["x"], 0.0, 1.0, eps, nd)[0]}


# ---------------------------------------------------------------------------------------------
# The specs
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# Batch norm (SPEC §4)
# ---------------------------------------------------------------------------------------------


def _bn_make(shape, dtype, seed, variant):
    training, channels_last, affine, running = variant
    if len(shape) < 2:
        return None
    rng = np.random.default_rng(seed)
    c = shape[-1] if channels_last or len(shape) == 2 else shape[1]
    args = {
        "x": R.round_to(rng.normal(0.5, 1.5, shape), dtype),
        "weight": R.round_to(rng.normal(1.0, 0.5, (c,)), dtype) if affine else None,
        "bias": R.round_to(rng.normal(0.0, 0.5, (c,)), dtype) if affine else None,
        "running_mean": R.round_to(rng.normal(0.2, 0.3, (c,)), dtype) if running else None,
        "running_var": R.round_to(rng.uniform(0.5, 2.0, (c,)), dtype) if running else None,
        "training": training, "momentum": 0.1, "eps": 1e-5, "channels_last": channels_last,
    }
    label = (f"{'train' if training else 'eval'}-{'last' if channels_last else 'first'}"
             f"{'-affine' if affine else ''}{'-running' if running else ''}")
    return Sample(label, args, {"y": R.round_to(rng.normal(0.0, 1.0, shape), dtype)})


def _bn_ref(args):
    return R.batch_norm_forward(args["x"], args["weight"], args["bias"], args["running_mean"],
                                args["running_var"], args["training"], args["momentum"],
                                args["eps"], args["channels_last"])


def _bn_reference(args):
    y, mean, rstd, rm, rv = _bn_ref(args)
    empty = np.empty((0,))
    return {"y": y, "save_mean": mean, "save_rstd": rstd,
            "new_running_mean": empty if rm is None else rm,
            "new_running_var": empty if rv is None else rv}


def _bn_reference_grads(args, grads):
    _, mean, rstd, _, _ = _bn_ref(args)
    dx, dw, db = R.batch_norm_backward(grads["y"], args["x"], mean, rstd, args["weight"],
                                       args["training"], args["channels_last"])
    return {"x": dx, "weight": dw if args["weight"] is not None else None,
            "bias": db if args["bias"] is not None else None}


# ---------------------------------------------------------------------------------------------
# Group and instance norm (SPEC §5)
# ---------------------------------------------------------------------------------------------


def _gn_make(shape, dtype, seed, variant):
    channels_last, affine, groups = variant
    if len(shape) < 2:
        return None
    c = shape[-1] if channels_last or len(shape) == 2 else shape[1]
    G = {"one": 1, "all": c, "two": 2}[groups]
    if c % G or np.prod(shape) // (shape[0] * G) == 1:
        return None  # (a one-element group: var 0, rstd = eps^-1/2 amplifies every rounding)
    rng = np.random.default_rng(seed)
    args = {
        "x": R.round_to(rng.normal(0.5, 1.5, shape), dtype),
        "weight": R.round_to(rng.normal(1.0, 0.5, (c,)), dtype) if affine else None,
        "bias": R.round_to(rng.normal(0.0, 0.5, (c,)), dtype) if affine else None,
        "num_groups": G, "eps": 1e-5, "channels_last": channels_last,
    }
    label = f"{'last' if channels_last else 'first'}-G{groups}{'-affine' if affine else ''}"
    return Sample(label, args, {"y": R.round_to(rng.normal(0.0, 1.0, shape), dtype)})


def _gn_reference(args):
    y, mean, rstd = R.group_norm_forward(args["x"], args["num_groups"], args["weight"],
                                         args["bias"], args["eps"], args["channels_last"])
    return {"y": y, "save_mean": mean, "save_rstd": rstd}


def _gn_reference_grads(args, grads):
    _, mean, rstd = R.group_norm_forward(args["x"], args["num_groups"], args["weight"],
                                         args["bias"], args["eps"], args["channels_last"])
    dx, dw, db = R.group_norm_backward(grads["y"], args["x"], mean, rstd, args["num_groups"],
                                       args["weight"], args["channels_last"])
    return {"x": dx, "weight": dw if args["weight"] is not None else None,
            "bias": db if args["bias"] is not None else None}


def _in_make(shape, dtype, seed, variant):
    channels_last, affine, running = variant
    nd = len(shape)
    if nd < 3:  # instance norm needs spatial positions
        return None
    rng = np.random.default_rng(seed)
    c = shape[-1] if channels_last else shape[1]
    args = {
        "x": R.round_to(rng.normal(0.5, 1.5, shape), dtype),
        "weight": R.round_to(rng.normal(1.0, 0.5, (c,)), dtype) if affine else None,
        "bias": R.round_to(rng.normal(0.0, 0.5, (c,)), dtype) if affine else None,
        "running_mean": R.round_to(rng.normal(0.2, 0.3, (c,)), dtype) if running else None,
        "running_var": R.round_to(rng.uniform(0.5, 2.0, (c,)), dtype) if running else None,
        "momentum": 0.1, "eps": 1e-5, "channels_last": channels_last,
    }
    label = (f"{'last' if channels_last else 'first'}{'-affine' if affine else ''}"
             f"{'-running' if running else ''}")
    return Sample(label, args, {"y": R.round_to(rng.normal(0.0, 1.0, shape), dtype)})


def _in_reference(args):
    y, mean, rstd, rm, rv = R.instance_norm_forward(
        args["x"], args["weight"], args["bias"], args["running_mean"], args["running_var"],
        args["momentum"], args["eps"], args["channels_last"])
    empty = np.empty((0,))
    return {"y": y, "save_mean": mean, "save_rstd": rstd,
            "new_running_mean": empty if rm is None else rm,
            "new_running_var": empty if rv is None else rv}


def _in_reference_grads(args, grads):
    x = args["x"]
    c = x.shape[-1] if args["channels_last"] else x.shape[1]
    return _gn_reference_grads(dict(args, num_groups=c), grads)


# ---------------------------------------------------------------------------------------------
# Batch layer norm (SPEC §7)
# ---------------------------------------------------------------------------------------------


def _bln_make(shape, dtype, seed, variant):
    b_in, f_in, affine, running = variant
    if len(shape) < 2 or (running and (shape[0] < 2 or shape[-1] < 2)):
        return None
    if not running and not (b_in and f_in):
        return None  # (evaluation with running statistics needs them)
    rng = np.random.default_rng(seed)
    F = shape[-1]
    args = {
        "x": R.round_to(rng.normal(0.5, 1.5, shape), dtype),
        "weight": R.round_to(rng.normal(1.0, 0.5, (F,)), dtype) if affine else None,
        "bias": R.round_to(rng.normal(0.0, 0.5, (F,)), dtype) if affine else None,
        "running_batch_mean": R.round_to(rng.normal(0.2, 0.3, shape[1:]), dtype) if running else None,
        "running_batch_var": R.round_to(rng.uniform(0.5, 2.0, shape[1:]), dtype) if running else None,
        "running_feature_mean": R.round_to(rng.normal(0.2, 0.3, shape[1:-1] or (1,)), dtype)
        if running else None,
        "running_feature_var": R.round_to(rng.uniform(0.5, 2.0, shape[1:-1] or (1,)), dtype)
        if running else None,
        "batch_stats_of_input": b_in, "feature_stats_of_input": f_in, "momentum": 0.1,
        "eps": 1e-3, "delta": 1e-4, "batch_size": 0.0,
    }
    label = (f"b{'in' if b_in else 'run'}-f{'in' if f_in else 'run'}"
             f"{'-affine' if affine else ''}{'-running' if running else ''}")
    return Sample(label, args, {"y": R.round_to(rng.normal(0.0, 1.0, shape), dtype)})


_BLN_RUN = ("running_batch_mean", "running_batch_var", "running_feature_mean",
            "running_feature_var")


def _bln_ref(args):
    running = [args[k] for k in _BLN_RUN] if args["running_batch_mean"] is not None else None
    return R.batch_layer_norm_forward(args["x"], args["weight"], args["bias"], running,
                                      args["batch_stats_of_input"],
                                      args["feature_stats_of_input"], args["momentum"],
                                      args["eps"], args["delta"], args["batch_size"] or None)


def _bln_reference(args):
    y, bm, br, fm, fr, new = _bln_ref(args)
    out = {"y": y, "batch_mean": bm, "batch_rstd": br, "feature_mean": fm, "feature_rstd": fr}
    for k, name in enumerate(_BLN_RUN):
        out["new_" + name] = np.empty((0,)) if new is None else new[k]
    return out


def _bln_reference_grads(args, grads):
    _, bm, br, fm, fr, _ = _bln_ref(args)
    dx, dw, db = R.batch_layer_norm_backward(grads["y"], args["x"], bm, br, fm, fr,
                                             args["weight"], args["batch_stats_of_input"],
                                             args["feature_stats_of_input"], args["delta"],
                                             args["batch_size"] or None)
    return {"x": dx, "weight": dw if args["weight"] is not None else None,
            "bias": db if args["bias"] is not None else None}


# ---------------------------------------------------------------------------------------------
# LN-RNN sequences (SPEC §12): shape (T, B, input_size, hidden_size)
# ---------------------------------------------------------------------------------------------

_RNN_LN = {"lstm": ("ln_x", "ln_h", "ln_c"), "gru": ("ln_x", "ln_h"), "rnn": ("ln_x",)}


def _rnn_make(family):
    G = {"lstm": 4, "gru": 3, "rnn": 1}[family]

    def make(shape, dtype, seed, variant):
        per_gate, reverse, bias, ln, states, batch_first, zone, relu = variant
        if len(shape) != 4:
            return None
        T, B, I, H = shape
        if (per_gate or family == "rnn") and H < 3:
            # LN over one or two values is degenerate or ill-conditioned (x̂ = ±1: rstd is
            # 2/|a − b|): a float32 gradient loses digits the test cannot grant it
            return None
        rng = np.random.default_rng(seed)
        N = G * H
        r = lambda *sh, scale=1.0, loc=0.0: R.round_to(rng.normal(loc, scale, sh), dtype)
        xs = (B, T, I) if batch_first else (T, B, I)
        ys = (B, T, H) if batch_first else (T, B, H)
        args = {"x": r(*xs), "w_ih": r(N, I, scale=0.5), "w_hh": r(N, H, scale=0.5),
                "b_ih": r(N, scale=0.3) if bias else None, "b_hh": r(N, scale=0.3) if bias else None,
                "h0": r(B, H, scale=0.5) if states else None,
                "batch_first": batch_first, "per_gate": per_gate, "eps": 1e-5,
                "reverse": reverse, "zoneout_h": 0.0}
        if family == "lstm":
            args["c0"] = r(B, H, scale=0.5) if states else None
        for part in _RNN_LN[family]:
            n = H if (part == "ln_c" or family == "rnn") else N
            args[f"{part}_weight"] = r(n, scale=0.2, loc=1.0) if ln else None
            args[f"{part}_bias"] = r(n, scale=0.2) if ln else None
        masks = ("h", "c") if family == "lstm" else ("h",)
        for m in masks:
            args[f"zoneout_mask_{m}"] = ((rng.random(ys) < 0.3).astype(np.float64)
                                         if zone == "mask" else None)
            args[f"zoneout_{m}"] = 0.25 if zone == "eval" else 0.0
        if family == "rnn":
            args["relu"] = relu
        grads = {"y": r(*ys), "h_n": r(B, H)}
        if family == "lstm":
            grads["c_n"] = r(B, H)
        label = "-".join(k for k, on in (("pergate", per_gate), ("reverse", reverse),
                                          ("bias", bias), ("ln", ln), ("states", states),
                                          ("bf", batch_first), ("relu", relu)) if on)
        return Sample(f"{label}-zo{zone}", args, grads)

    return make


def _rnn_ref_call(family, args):
    bf = args["batch_first"]
    tm = (lambda a: None if a is None else np.swapaxes(a, 0, 1)) if bf else (lambda a: a)
    cell = family if family != "rnn" else ("rnn_relu" if args["relu"] else "rnn_tanh")
    p = {k: args.get(k) for k in ("w_ih", "w_hh", "b_ih", "b_hh")}
    for part in _RNN_LN[family]:
        p[f"{part}_weight"], p[f"{part}_bias"] = args[f"{part}_weight"], args[f"{part}_bias"]
    zh = args["zoneout_mask_h"] if args["zoneout_mask_h"] is not None else args["zoneout_h"]
    zc = None
    if family == "lstm":
        zc = args["zoneout_mask_c"] if args["zoneout_mask_c"] is not None else args["zoneout_c"]
    common = dict(h0=args["h0"], c0=args.get("c0"), eps=args["eps"], per_gate=args["per_gate"],
                  reverse=args["reverse"],
                  zoneout_h=tm(zh) if isinstance(zh, np.ndarray) else zh,
                  zoneout_c=tm(zc) if isinstance(zc, np.ndarray) else zc)
    return cell, tm, p, common


def _rnn_reference(family):
    def reference(args):
        cell, tm, p, common = _rnn_ref_call(family, args)
        y, h, c = R.ln_rnn_sequence(cell, tm(args["x"]), p, **common)
        out = {"y": tm(y), "h_n": h}
        if family == "lstm":
            out["c_n"] = c
        return out

    return reference


def _rnn_reference_grads(family):
    def reference_grads(args, grads):
        cell, tm, p, common = _rnn_ref_call(family, args)
        g = R.ln_rnn_sequence_backward(cell, tm(args["x"]), p, dy=tm(grads.get("y")),
                                       dh_n=grads.get("h_n"), dc_n=grads.get("c_n"), **common)
        out = {"x": tm(g["x"])}
        for k in ("h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"):
            if k in args:
                out[k] = g[k] if args[k] is not None else None
        for part in _RNN_LN[family]:
            for w in ("weight", "bias"):
                k = f"{part}_{w}"
                out[k] = g[k] if args[k] is not None else None
        return out

    return reference_grads


def _rnn_spec(family, variants):
    return OpSpec(family, f"_rnn:{family.upper()}", _rnn_make(family), variants,
                  ((3, 2, 3, 4), (1, 1, 2, 3), (2, 3, 1, 2)), (6, 37, 19, 33),
                  _rnn_reference(family), _rnn_reference_grads(family),
                  batch_invariant=False, bench=False, opaque=("reserve",),
                  run_shape=(4, 6, 9, 5))


# (per_gate, reverse, bias, ln, states, batch_first, zoneout: None / "mask" / "eval", relu)
_RNN_VARIANTS = ((False, False, True, True, True, False, "mask", False),
                 (True, True, False, False, False, True, None, False),
                 (False, True, True, True, True, True, "eval", False))
_ELMAN_VARIANTS = ((False, False, True, True, True, False, "mask", False),
                   (False, True, False, False, False, True, None, True),
                   (False, False, True, True, True, True, "eval", True))


# ---------------------------------------------------------------------------------------------
# Weight norm and spectral norm (SPEC §9–10)
# ---------------------------------------------------------------------------------------------


def _wn_dim(shape, which):
    """The declaration's dim for a variant: first / last / middle dim, or -1 (all dims)."""
    nd = len(shape)
    return {"first": 0, "last": nd - 1, "middle": 1 if nd >= 3 else None, "all": -1}[which]


def _wn_make(shape, dtype, seed, variant):
    dim = _wn_dim(shape, variant)
    if dim is None:
        return None
    rng = np.random.default_rng(seed)
    v = R.round_to(rng.normal(0.3, 1.0, shape), dtype)
    gshape = () if dim == -1 else tuple(s if i == dim else 1 for i, s in enumerate(shape))
    args = {"v": v, "g": R.round_to(rng.normal(1.0, 0.5, gshape), dtype), "dim": dim}
    return Sample(f"dim-{variant}", args, {"w": R.round_to(rng.normal(0.0, 1.0, shape), dtype)})


def _wn_reference(args):
    w, n = R.weight_norm_forward(args["v"], args["g"], args["dim"])
    return {"w": w, "norm": n}


def _wn_reference_grads(args, grads):
    dv, dg = R.weight_norm_backward(grads["w"], args["v"], args["g"], args["dim"])
    return {"v": dv, "g": dg}


def _sn_make(shape, dtype, seed, variant):
    if len(shape) != 2:
        return None
    rng = np.random.default_rng(seed)
    u = rng.normal(size=shape[0])
    v = rng.normal(size=shape[1])
    args = {"weight": R.round_to(rng.normal(0.0, 1.0, shape), dtype),
            "u": R.round_to(u / np.linalg.norm(u), dtype),
            "v": R.round_to(v / np.linalg.norm(v), dtype),
            "n_power_iterations": variant, "eps": 1e-12}
    return Sample(f"iter{variant}", args, {"out": R.round_to(rng.normal(0.0, 1.0, shape), dtype)})


def _sn_reference(args):
    o, sigma, u, v = R.spectral_norm_forward(args["weight"], args["u"], args["v"],
                                             args["n_power_iterations"], args["eps"])
    return {"out": o, "sigma": np.asarray(sigma), "u_new": u, "v_new": v}


def _sn_reference_grads(args, grads):
    o, sigma, u, v = R.spectral_norm_forward(args["weight"], args["u"], args["v"],
                                             args["n_power_iterations"], args["eps"])
    return {"weight": R.spectral_norm_backward(grads["out"], args["weight"], u, v, sigma)}


def _sn_fd_forward(args, base):
    # The backward holds u, v (after the base point's iterations) constant (SPEC §10).
    _, _, u, v = R.spectral_norm_forward(base["weight"], base["u"], base["v"],
                                         base["n_power_iterations"], base["eps"])
    W = np.asarray(args["weight"], np.float64)
    return {"out": W / float(u @ W @ v)}



SPECS: List[OpSpec] = [
    _row_spec("layer_norm", "_row_norm_ops:LAYER_NORM",
              {"fwd": lambda A, P, S, e: 2 * A + 2 * P,
               "fwd+bwd": lambda A, P, S, e: 5 * A + 4 * S + 5 * P}),
    _row_spec("rms_norm", "_row_norm_ops:RMS_NORM",
              {"fwd": lambda A, P, S, e: 2 * A + P,
               "fwd+bwd": lambda A, P, S, e: 5 * A + 2 * S + 3 * P}),
    _row_spec("add_layer_norm", "_row_norm_ops:ADD_LAYER_NORM",
              {"fwd": lambda A, P, S, e: 4 * A + 2 * P,
               "fwd+bwd": lambda A, P, S, e: 7 * A + 4 * S + 5 * P}),
    _row_spec("add_rms_norm", "_row_norm_ops:ADD_RMS_NORM",
              {"fwd": lambda A, P, S, e: 4 * A + P,
               "fwd+bwd": lambda A, P, S, e: 7 * A + 2 * S + 3 * P}),
    OpSpec("dyt", "_dyt:DYT", _dyt_make,
           ((True, True, True), (False, True, True), (True, False, False), (True, True, False),
            (False, False, True)),
           ((3, 5), (2, 3, 4), (2, 2, 3, 2)), (301, 1024), _dyt_reference, _dyt_reference_grads,
           traffic={"fwd": lambda A, P, S, e: 2 * A + 2 * P + e,
                    "fwd+bwd": lambda A, P, S, e: 5 * A + 5 * P + 3 * e}),
    OpSpec("ada_norm", "_ada_norm:ADA_NORM", _ada_make,
           ((1, 0.1, 2.0, 1e-5), (2, -0.3, 0.7, 1e-2), (1, 0.5, 3.0, 0.0)),
           ((3, 5), (4, 2), (2, 3, 4)), (131, 1000), _ada_reference, _ada_reference_grads,
           fd_forward=_ada_fd_forward, exact_gradient=False,
           traffic={"fwd": lambda A, P, S, e: 2 * A,
                    "fwd+bwd": lambda A, P, S, e: 5 * A + 4 * S}),
    OpSpec("batch_norm", "_batch_norm:BATCH_NORM", _bn_make,
           ((True, False, True, True), (True, True, True, False), (False, False, True, True),
            (True, False, False, True), (False, True, False, True)),
           ((3, 4), (2, 3, 4), (2, 2, 3, 2)), (33, 64, 7, 7), _bn_reference, _bn_reference_grads,
           batch_invariant=False, bench=False,
           phases=("_batch_norm:BATCH_NORM_STATS", "_batch_norm:MOMENTS_MERGE",
                   "_batch_norm:BATCH_NORM_APPLY", "_batch_norm:BATCH_NORM_BACKWARD_REDUCE",
                   "_batch_norm:BATCH_NORM_BACKWARD_APPLY")),
    OpSpec("group_norm", "_group_norm:GROUP_NORM", _gn_make,
           ((False, True, "two"), (True, True, "two"), (False, False, "one"),
            (True, False, "all"), (False, True, "all")),
           ((2, 4), (2, 4, 3), (2, 2, 3, 2), (3, 3, 2, 2)), (33, 64, 7, 7), _gn_reference,
           _gn_reference_grads, bench=False),
    OpSpec("instance_norm", "_group_norm:INSTANCE_NORM", _in_make,
           ((False, True, True), (True, True, False), (False, False, False),
            (True, False, True)),
           ((2, 3, 4), (2, 2, 3, 2), (3, 3, 2, 2)), (33, 64, 7, 7), _in_reference,
           _in_reference_grads, bench=False),
    OpSpec("batch_layer_norm", "_batch_layer_norm:BATCH_LAYER_NORM", _bln_make,
           ((True, True, True, True), (True, True, False, False), (False, True, True, True),
            (True, False, False, True), (False, False, True, True)),
           ((3, 4), (2, 3, 4), (3, 2, 2, 3)), (33, 16, 64), _bln_reference,
           _bln_reference_grads, batch_invariant=False, bench=False),
    _rnn_spec("lstm", _RNN_VARIANTS),
    _rnn_spec("gru", _RNN_VARIANTS),
    _rnn_spec("rnn", _ELMAN_VARIANTS),
    OpSpec("weight_norm", "_param_norm:WEIGHT_NORM", _wn_make,
           ("first", "last", "middle", "all"),
           ((3, 5), (2, 3, 4), (4, 2, 3, 2), (6,)), (301, 1024), _wn_reference,
           _wn_reference_grads, bench=False, run_shape=(4, 6, 9)),
    OpSpec("spectral_norm", "_param_norm:SPECTRAL_NORM", _sn_make, (1, 0, 3),
           ((3, 5), (6, 4), (1, 7)), (257, 1031), _sn_reference, _sn_reference_grads,
           fd_forward=_sn_fd_forward, exact_gradient=False, batch_invariant=False, bench=False,
           run_shape=(6, 9)),
]
BY_NAME = {s.name: s for s in SPECS}


def samples(spec: OpSpec, dtype: str = "float64", shapes=None):
    """(label, Sample) for every variant × shape of the spec that fit together."""
    out = []
    for i, shape in enumerate(shapes or spec.fd_shapes):
        for j, v in enumerate(spec.variants):
            s = spec.make(shape, dtype, 1000 * i + j, v)
            if s is not None:
                out.append((f"{'x'.join(map(str, shape))}-{s.label}", s))
    return out
