"""Every op through the same checks, from its one test definition (tests/op_specs.py):
finite differences of the reference, normkit's torch path (custom op, autograd formula, our
kernels) against the reference in float64 and float32, gradcheck, opcheck, torch.compile
(fullgraph, eager and aot_eager backends), the generated
Op.run against the plan interpreter, determinism (threads, run to run, batch invariance) and
the benchmark's byte counts. The family files test what is particular to each family."""

import numpy as np
import pytest

import op_specs as S
import reference as R

SPECS = S.SPECS


def _cases(shapes=None, dtype="float64"):
    out = []
    for spec in SPECS:
        for label, sample in S.samples(spec, dtype, shapes):
            out.append(pytest.param(spec, sample, id=f"{spec.name}-{label}"))
    return out


FD_CASES = _cases()


def _torch():
    torch = pytest.importorskip("torch")
    import normkit.torch  # noqa: F401  (registers the custom ops)

    return torch


def _present_differentiable(decl, args):
    return [decl.input_names[k] for k in decl.differentiable_inputs
            if args[decl.input_names[k]] is not None]


def _loss_of(outputs: dict, grads: dict) -> float:
    return sum(float(np.sum(outputs[o] * g)) for o, g in grads.items())


# ---------------------------------------------------------------------------------------------
# The reference against itself
# ---------------------------------------------------------------------------------------------


@pytest.mark.any_isa
@pytest.mark.parametrize("spec,sample", FD_CASES)
def test_reference_grads_match_finite_differences(spec, sample):
    decl = spec.declaration()
    args, grads = sample.args, sample.grads
    fwd = spec.fd_forward or (lambda a, base: spec.reference(a))
    if spec.fd_forward is not None:  # the stopped form agrees with the forward at the base point
        at_base, forward = spec.fd_forward(args, args), spec.reference(args)
        for o in at_base:
            np.testing.assert_allclose(at_base[o], forward[o], rtol=1e-13, atol=1e-14, err_msg=o)
    ref = spec.reference_grads(args, grads)
    for name in decl.input_names:
        if name in ref and args.get(name) is None:
            assert ref[name] is None, f"a gradient for the absent {name}"
    for name in _present_differentiable(decl, args):
        fd = R.numerical_grad(lambda **over: _loss_of(fwd(dict(args, **over), args), grads),
                              {name: args[name]}, name)
        np.testing.assert_allclose(ref[name], fd, rtol=1e-6, atol=1e-7, err_msg=f"d{name}")


# ---------------------------------------------------------------------------------------------
# normkit's torch path against the reference
# ---------------------------------------------------------------------------------------------


def _torch_args(torch, decl, args, dtype, grad):
    out = []
    for i in decl.inputs:
        v = args[i.name]
        if i.is_tensor and v is not None:
            v = torch.from_numpy(np.ascontiguousarray(v).reshape(np.shape(v))).to(
                getattr(torch, dtype))  # (a 0-dim input stays 0-dim)
            if grad and i.differentiable:
                v.requires_grad_(True)
        out.append(v)
    return out


def _torch_op(decl):
    """The registered op's eager entry point, returning a tuple of outputs always."""
    import normkit.torch  # noqa: F401  (registers every op)
    from normkit.torch import _registry

    top = _registry._REGISTERED[decl.name]

    def call(*args):
        outs = top(*args)  # one output: the tensor itself
        return outs if isinstance(outs, (tuple, list)) else (outs,)

    return call


def _f64(t):
    return t.detach().to("cpu").double().numpy()


@pytest.mark.any_isa
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("spec,sample", FD_CASES)
def test_torch_path_matches_reference(spec, sample, dtype):
    torch = _torch()
    decl = spec.declaration()
    args = {k: (R.round_to(v, dtype) if isinstance(v, np.ndarray) else v)
            for k, v in sample.args.items()}
    grads = {o: R.round_to(g, dtype) for o, g in sample.grads.items()}
    ref = spec.reference(args)
    ref_grads = spec.reference_grads(args, grads)
    # Every output, statistics included: the custom op, no autograd.
    with torch.no_grad():
        outs = getattr(torch.ops.normkit, decl.name).default(
            *_torch_args(torch, decl, args, dtype, False))
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    for name, o in zip(decl.output_names, outs):
        if name in spec.opaque:
            assert o.dim() == 1 and o.numel() > 0, name
            continue
        R.assert_close(_f64(o), ref[name], dtype, name, scale=np.max(np.abs(ref[name]), initial=0.0))
    # The eager path with autograd: forward and the gradients of every present input.
    targs = _torch_args(torch, decl, args, dtype, True)
    outs = _torch_op(decl)(*targs)
    by_name = dict(zip(decl.output_names, outs))
    loss = sum((by_name[o] * torch.from_numpy(g).to(getattr(torch, dtype))).sum()
               for o, g in grads.items())
    names = _present_differentiable(decl, args)
    got = torch.autograd.grad(loss, [targs[decl.input_names.index(n)] for n in names])
    for name, g in zip(names, got):
        r = ref_grads[name]
        R.assert_close(_f64(g), r, dtype, f"d{name}", scale=np.max(np.abs(r)) * r.size ** 0.5)


@pytest.mark.any_isa
@pytest.mark.parametrize("spec,sample", [c for c in FD_CASES if c.values[0].exact_gradient])
def test_gradcheck(spec, sample):
    torch = _torch()
    decl = spec.declaration()
    targs = _torch_args(torch, decl, sample.args, "float64", True)
    names = _present_differentiable(decl, sample.args)
    where = [decl.input_names.index(n) for n in names]
    top = _torch_op(decl)
    diff_out = [k for k, o in enumerate(decl.outputs) if o.differentiable]

    def f(*ts):
        a = list(targs)
        for k, t in zip(where, ts):
            a[k] = t
        outs = top(*a)
        return tuple(outs[k] for k in diff_out)

    assert torch.autograd.gradcheck(f, [targs[k] for k in where])


# AdaNorm's gradient is stopped through scale·(1 − k·ŷ) (exact_gradient=False): gradcheck,
# which differentiates the forward numerically, does not apply; its finite-difference check
# above differentiates the stopped form instead.


_OPCHECK_CASES = _cases(shapes=None)


def _lead(spec, sample):
    """A sample's first tensor input (x, or v / weight for the parameter norms)."""
    decl = spec.declaration()
    return next(sample.args[i.name] for i in decl.inputs if i.is_tensor)


@pytest.mark.any_isa
@pytest.mark.parametrize("spec,sample", [c for c in _OPCHECK_CASES
                                         if _lead(*c.values).shape in
                                         (c.values[0].fd_shapes[0], c.values[0].fd_shapes[-1])])
def test_opcheck(spec, sample):
    torch = _torch()
    decl = spec.declaration()
    targs = _torch_args(torch, decl, sample.args, "float32", True)
    torch.library.opcheck(getattr(torch.ops.normkit, decl.name).default, tuple(targs))


@pytest.mark.any_isa
@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_compile_fullgraph(spec, which, backend):
    # torch.compile traces the custom op (fake implementation, autograd formula) without a
    # graph break; outputs and gradients as in eager mode. Two variants per op: all features,
    # and the second (no affine; for add+norm residual_scale = 1, the SameGrad shortcut).
    torch = _torch()
    decl = spec.declaration()
    _, sample = S.samples(spec, "float32")[which]
    top = _torch_op(decl)
    names = _present_differentiable(decl, sample.args)
    diff_out = [k for k, o in enumerate(decl.outputs) if o.differentiable]

    def step(*targs):
        outs = top(*targs)
        return sum((outs[k].float() * (k + 1)).sum() for k in diff_out)

    results = []
    for fn in (step, torch.compile(step, fullgraph=True, backend=backend)):
        targs = _torch_args(torch, decl, sample.args, "float32", True)
        loss = fn(*targs)
        grads = torch.autograd.grad(loss, [targs[decl.input_names.index(n)] for n in names])
        results.append((loss.detach(), grads))
    torch._dynamo.reset()
    (l0, g0), (l1, g1) = results
    torch.testing.assert_close(l1, l0, rtol=1e-6, atol=1e-6)
    for name, a, b in zip(names, g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=f"d{name}")


# ---------------------------------------------------------------------------------------------
# The declaration's two runners agree
# ---------------------------------------------------------------------------------------------


def _numpy_args(decl, args, dtype="float32", strided=()):
    out = []
    for i in decl.inputs:
        v = args.get(i.name)
        if i.is_tensor and v is not None:
            v = np.asarray(v, dtype=R.NP_DTYPES[dtype])
            if i.name in strided:  # a view the preparation copies: every other element
                w = np.empty(v.shape[:-1] + (2 * v.shape[-1],), v.dtype)
                w[..., ::2] = v
                v = w[..., ::2]
        out.append(v)
    return out


@pytest.mark.any_isa
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_generated_run_matches_the_plans(spec):
    # Op.run is generated from the declaration (Note [Generated run], normkit/_registry.py);
    # Op.run_plans interprets the same plans: the same outputs bit for bit, forward and
    # backward, with strided inputs that the preparation copies.
    from normkit._arrays import NumpyLib

    decl = spec.declaration()
    cases = S.samples(spec, "float32", shapes=[spec.run_shape])
    assert cases
    for _, sample in cases:
        fargs = _numpy_args(decl, sample.args, strided=("x",))
        # Outputs not asked for (None in want) are skipped alike.
        _same(decl, decl.run(NumpyLib, fargs, decl.no_grad_want),
              decl.run_plans(NumpyLib, fargs, decl.no_grad_want))
        fwd = decl.run(NumpyLib, fargs, decl.all_want)
        _same(decl, fwd, decl.run_plans(NumpyLib, fargs, decl.all_want))
        bwd = decl.backward
        values = dict(zip(decl.input_names, fargs), **dict(zip(decl.output_names, fwd)))
        for need in (True, False):  # every gradient, then only the unflagged ones (dx)
            bargs = []
            for i in bwd.inputs:
                if i.name.startswith("need_"):
                    bargs.append(need)
                elif i.name.startswith("d") and i.name[1:] in decl.output_names:
                    g = sample.grads.get(i.name[1:])
                    bargs.append(None if g is None else np.asarray(g, np.float32))
                else:
                    bargs.append(values[i.name])
            _same(bwd, bwd.run(NumpyLib, bargs, bwd.all_want),
                  bwd.run_plans(NumpyLib, bargs, bwd.all_want))
    # The generated code prepares rows as the declaration says.
    for k, nd_index, nd in decl.row_inputs:
        name, by = decl.input_names[k], nd if nd_index is None else decl.input_names[nd_index]
        assert f"lib.rows({name}, {by})" in decl._run.source


def _same(op, got, ref):
    assert len(got) == len(ref) == len(op.outputs)
    for name, g, r in zip(op.output_names, got, ref):
        assert (g is None) == (r is None), (op.name, name)
        if g is not None:
            assert g.shape == r.shape and g.dtype == r.dtype and g.strides == r.strides
            assert g.tobytes() == r.tobytes(), (op.name, name)


# ---------------------------------------------------------------------------------------------
# Determinism (SPEC §0): threads, run to run, batch invariance
# ---------------------------------------------------------------------------------------------


def _forward_backward(torch, spec, args, grads):
    """Bytes of every output (custom op, statistics included) and every gradient."""
    decl = spec.declaration()
    with torch.no_grad():
        outs = getattr(torch.ops.normkit, decl.name).default(
            *_torch_args(torch, decl, args, "float32", False))
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    targs = _torch_args(torch, decl, args, "float32", True)
    res = dict(zip(decl.output_names, _torch_op(decl)(*targs)))
    loss = sum((res[o] * torch.from_numpy(g).float()).sum() for o, g in grads.items())
    names = _present_differentiable(decl, args)
    gs = torch.autograd.grad(loss, [targs[decl.input_names.index(n)] for n in names])
    out = {n: o.numpy() for n, o in zip(decl.output_names, outs) if o is not None}
    out.update({"d" + n: g.numpy() for n, g in zip(names, gs)})
    return out


@pytest.mark.any_isa
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_thread_and_batch_invariance(spec, threads, cpu_isa):
    torch = _torch()
    import normkit

    for isa in normkit.available_cpu_isas():
        normkit.set_cpu_isa(isa)
        sample = spec.make(spec.big_shape, "float32", 7, spec.variants[0])
        args, grads = sample.args, sample.grads
        threads(1)
        one = _forward_backward(torch, spec, args, grads)
        threads(3)
        three = _forward_backward(torch, spec, args, grads)
        threads(2)
        two = _forward_backward(torch, spec, args, grads)
        again = _forward_backward(torch, spec, args, grads)
        for name in one:
            assert one[name].tobytes() == two[name].tobytes(), f"{isa}: {name}, 1 vs 2 threads"
            assert one[name].tobytes() == three[name].tobytes(), f"{isa}: {name}, 1 vs 3 threads"
            assert two[name].tobytes() == again[name].tobytes(), f"{isa}: {name}, run to run"
        if not spec.batch_invariant:
            continue
        # The first rows alone: every per-row output and gradient keeps its bits.
        n = spec.big_shape[0]
        def cut(a):  # the batch-shaped arrays (x, residual, dy, ...), not the parameters
            return a[:5] if isinstance(a, np.ndarray) and a.ndim >= 2 and a.shape[0] == n else a

        part = _forward_backward(torch, spec, {k: cut(v) for k, v in args.items()},
                                 {k: cut(v) for k, v in grads.items()})
        outputs = spec.declaration().output_names
        for name, full in two.items():
            if full.shape[:1] == (n,) and (full.ndim >= 2 or name in outputs):
                assert part[name].tobytes() == full[:5].tobytes(), f"{isa}: {name} of a row " \
                                                                   "depends on the batch"
    normkit.set_cpu_isa(cpu_isa)


# ---------------------------------------------------------------------------------------------
# The registry, the specs and the benchmark agree on which ops exist and what they move
# ---------------------------------------------------------------------------------------------


@pytest.mark.any_isa
def test_every_declared_op_has_a_spec():
    pytest.importorskip("torch")  # the registry's torch side is part of what is compared
    import normkit.torch  # noqa: F401
    from normkit.bench import cases as C
    from normkit.torch import _registry

    specced = {spec.declaration() for spec in SPECS}
    covered = {op.name for op in specced} | {op.backward.name for op in specced}
    covered |= {spec.declaration(d).name for spec in SPECS for d in spec.phases}
    # Every registered op is an op with a spec, the backward of one, or one of its phases.
    assert set(_registry._REGISTERED) == covered
    assert set(C.OPS) == {spec.name for spec in SPECS if spec.bench}


@pytest.mark.any_isa
@pytest.mark.parametrize("spec", [s for s in SPECS if s.bench], ids=str)
def test_bench_traffic_matches_the_spec(spec):
    from normkit.bench import cases as C

    n, h = 7, 11
    for dtype in C.DTYPES:
        e = C.itemsize(dtype)
        A, P, St = n * h * e, h * e, n * C.STAT_BYTES
        for pass_ in C.PASSES:
            got = C.bytes_moved(C.Case(spec.name, dtype, (n, h), pass_, "fresh"))
            assert got == spec.traffic[pass_](A, P, St, e), (dtype, pass_)
