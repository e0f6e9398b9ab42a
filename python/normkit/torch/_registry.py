"""Declared ops (``normkit._registry.Op``) made into torch ops: :func:`register`.

For every declaration this generates

- the custom op ``torch.ops.normkit.<name>``: its schema comes from the declaration; its real
  implementation is the op's generated eager code (inputs laid out, outputs allocated as
  declared, the kernel called on the tensors' device and current stream); its fake
  implementation allocates the same outputs from the declaration without running anything,
  so ``torch.compile(fullgraph=True)`` and ``torch.export`` trace it;
- for a forward op, its autograd formula (``register_autograd``), which calls the backward op
  through ``torch.ops`` and hands each gradient to the input it is declared for, by name;
- the eager path, :class:`TorchOp`, which normkit's functions and modules call.

Why ``torch.library.custom_op`` (with ``schema=``) rather than ``torch.library.Library``
``define``/``impl``: the declaration already produces the schema string, and ``custom_op``
then also registers what a hand-made ``Library`` op would have to add itself — an autograd
kernel for ops without a formula (our backward ops: differentiating through them raises
instead of silently treating the gradient as a constant), the ADInplaceOrView kernel, and
the fake-implementation plumbing ``opcheck`` checks. Its per-call cost does not matter:
eager calls do not go through it.

Why an eager path next to the custom op: a call through the dispatcher costs tens of
microseconds of Python (the op's Python wrapper, the autograd kernel, ``redispatch``, and the
``autograd.Function`` that ``register_autograd`` generates, whose ``setup_context`` form makes
``Function.apply`` bind its arguments with ``inspect.signature`` on every call) — several
times the whole of ``F.layer_norm`` on a [1, 4096] input. torch.compile needs the op; eager
execution does not (TorchOp's docstring says which calls take which path). The eager
``autograd.Function`` and the custom op's formula share the context setup and the backward
below, so they cannot drift apart, and the tests compare every op's paths.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor

from normkit import _core
from normkit._arrays import TorchLib, _fresh_torch
from normkit._registry import (_UNCOUNTED, ALLOC_CONTIGUOUS, ALLOC_SHAPED, ALLOC_STRIDED,
                               shaped_alloc_expr, FROM_GRAD,
                               FROM_NEED, Op, bad_ndim, stat_shape_expr)

__all__ = ["register", "TorchOp", "NAMESPACE"]

NAMESPACE = "normkit"

_REGISTERED: Dict[str, "TorchOp"] = {}

# Per-call checks, bound once (a module attribute lookup chain per call would cost as much
# as the check; dynamo folds is_compiling() to True while it traces).
_is_compiling = torch.compiler.is_compiling
_grad_enabled = torch.is_grad_enabled
_dispatch_modes = torch._C._len_torch_dispatch_stack
_functorch_active = torch._C._are_functorch_transforms_active



def _export_refuses_grad() -> bool:
    """Whether the binding refuses tensors that require grad. It reads torch tensors through
    torch's DLPack C exchange API, which exports them as they are; without it (older torch)
    it falls back to ``__dlpack__``, which refuses them — then every tensor is detached first
    (a view, not a copy). Asked once, of the binding itself."""
    probe = getattr(_core, "_bench_copy", None)
    if probe is None:
        return not hasattr(Tensor, "__dlpack_c_exchange_api__")
    try:
        probe(torch.zeros(1, requires_grad=True), torch.empty(1))
        return False
    except Exception:
        return True


_DETACH = _export_refuses_grad()


# ---------------------------------------------------------------------------------------
# The eager path, generated
# ---------------------------------------------------------------------------------------
#
# Note [Generated eager code]. The eager path of every op is Python source generated from
# the declaration's plans (Op.ndim_checks, row_inputs, contiguous_inputs, custom_preps,
# alloc_plan, backward_plan) and compiled once: straight-line code with the op's own
# argument names, no loops over plans, no per-input helper calls. Why: F.layer_norm on a
# [1, 4096] tensor is one C++ call of ~6 us, about what normkit's binding call alone costs,
# so every Python call around ours shows; an interpreter of the plans (what Op.run does for
# NumPy and other arrays) measured ~3 us more per call than this code (1.6x F.layer_norm
# instead of ~1.3x), and generic setup_context / backward loops ~2.5 us more each. The code
# makes the same decisions as Op.run (the tests run both on every op and compare);
# TorchOp.source shows it. Generated names are prefixed ``_g_`` (no declaration may use it).

_F32, _F64 = torch.float32, torch.float64


def _empty_stat_torch(t: Tensor, nd: int) -> Tensor:
    """A per-row statistic of ``t`` (``Stat``): ``t``'s leading shape, float32 or float64.
    The shape goes to torch.empty as a tuple: a torch.Size argument takes ~40% longer to parse
    (~0.8 us of a ~2 us call on the test machine), which is most of a small kernel's time."""
    return torch.empty(tuple(t.shape)[: t.dim() - nd], dtype=_F64 if t.dtype == _F64 else _F32,
                       device=t.device)


def _core_allocates() -> bool:
    """Whether ``_core.empty_stat`` can allocate torch tensors (torch's DLPack exchange API
    with an allocator, torch >= 2.9): the same statistic without the Python-level torch call,
    ~1 us less per statistic (Note [Outputs allocated by the producer], interop.cpp)."""
    alloc = getattr(_core, "empty_stat", None)
    if alloc is None:
        return False
    try:
        t = alloc(torch.empty((2, 3)), 1)
    except (TypeError, RuntimeError):
        return False
    return type(t) is Tensor and tuple(t.shape) == (2,) and t.dtype == _F32 and t.is_contiguous()


_empty_stat = _core.empty_stat if _core_allocates() else _empty_stat_torch


def _zeros(meta) -> Tensor:
    """The gradient of an output that took no part in the loss, where the backward needs one."""
    shape, dtype, device = meta
    return torch.zeros(shape, dtype=dtype, device=device)


def _follow_threads(_get=torch.get_num_threads, _last=[0], _set=_core.set_default_num_threads):
    """Note [Threads follow torch]: a CPU kernel called through normkit.torch uses
    torch.get_num_threads() threads unless normkit.set_num_threads was called: one knob
    (torch.set_num_threads, a DataLoader worker's 1) governs both libraries' teams. torch's
    OpenMP runtime and ours are separate pools; at the same size they take turns on the same
    cores instead of one oversubscribing the other. Costs one torch call per op (~0.1 us)."""
    n = _get()
    if n != _last[0]:
        _set(n)
        _last[0] = n


# Names the generated code uses itself: no input or output may be called so.
_RESERVED = ("args", "self", "ctx", "grads", "inputs", "output", "_want", "_needs", "_r",
             "isinstance", "getattr", "type", "bool", "None", "True")

def _empty_like(t, **kw):
    """torch.empty_like, with huge pages advised for a large CPU output (Note [Huge pages for
    fresh outputs], normkit/_arrays.py)."""
    o = torch.empty_like(t, **kw)
    if o.numel() >= _HUGE_MIN_ELEMENTS and not o.is_cuda:
        _fresh_torch(o)
    return o


_HUGE_MIN_ELEMENTS = (32 << 20) // 8  # no tensor under this many elements reaches 32 MB

_GLOBALS = {
    "_g_Tensor": Tensor, "_g_TorchLib": TorchLib, "_g_bad_ndim": bad_ndim,
    "_g_empty_stat": _empty_stat, "_g_zeros": _zeros,
    "_g_empty_like": _empty_like, "_g_c_format": torch.contiguous_format,
    "_g_is_compiling": _is_compiling, "_g_grad_enabled": _grad_enabled,
    "_g_dispatch_modes": _dispatch_modes, "_g_functorch_active": _functorch_active,
    "_g_torch": torch, "_g_follow_threads": _follow_threads,
}


def _run_body(op: Op, indent: str, want=None, checked: bool = True) -> list:
    """Lines that prepare the inputs (named as declared), allocate the outputs for ``_want``
    (or for ``want``, when it is known when generating: the entry point without autograd)
    and run the kernel, leaving each output in a variable of its name. ``checked=False``:
    the CPU kernel on the inputs as given, without the Python-level checks and relayouts
    (the first try of Note [Optimistic eager calls])."""
    names = op.input_names
    lines = []
    if _DETACH:
        for i in op.inputs:
            if i.is_tensor:
                lines.append(f"if isinstance({i.name}, _g_Tensor): {i.name} = {i.name}.detach()")
    if not checked:
        return [indent + line for line in lines] + _alloc_and_run(op, indent, want, cpu_only=True)
    for t_index, nd_index, t_name, nd_name in op.ndim_checks:
        t, nd = names[t_index], names[nd_index]
        guard = f"{t} is not None and " if op.inputs[t_index].kind != "Tensor" else ""
        lines.append(f"if {guard}not 1 <= {nd} <= {t}.dim(): "
                     f"_g_bad_ndim({t_name!r}, {t}.dim(), {nd_name!r}, {nd})")

    def relayout(k, call):
        n = names[k]
        guard = f"{n} is not None and " if op.inputs[k].kind != "Tensor" else ""
        # The common case costs two C calls: a contiguous torch tensor is used as it is.
        lines.append(f"if {guard}not (isinstance({n}, _g_Tensor) and {n}.is_contiguous()): "
                     f"{n} = {call}")

    for k, nd_index, nd in op.row_inputs:
        relayout(k, f"_g_TorchLib.rows({names[k]}, {nd if nd_index is None else names[nd_index]})")
    for k in op.contiguous_inputs:
        relayout(k, f"_g_TorchLib.contiguous({names[k]})")
    for n, (k, _, deps) in enumerate(op.custom_preps):
        others = "".join(", " + names[j] for j in deps)
        lines.append(f"if {names[k]} is not None: "
                     f"{names[k]} = _g_prep{n}(_g_TorchLib, {names[k]}{others})")
    return [indent + line for line in lines] + _alloc_and_run(op, indent, want)


def _alloc_and_run(op: Op, indent: str, want, cpu_only: bool = False) -> list:
    """The output allocations and the kernel call of :func:`_run_body`."""
    names = op.input_names
    lines = []
    for i, (o, (kind, src, nd_index, flag)) in enumerate(zip(op.outputs, op.alloc_plan)):
        t = names[src]
        if kind == ALLOC_CONTIGUOUS:
            # empty_like of a C-contiguous tensor is C-contiguous; the keyword argument costs
            # ~0.5 us of parsing, so it is passed only when needed.
            alloc = (f"(_g_empty_like({t}) if {t}.is_contiguous() "
                     f"else _g_empty_like({t}, memory_format=_g_c_format))")
        elif kind == ALLOC_STRIDED:
            alloc = f"_g_empty_like({t})"
        elif kind == ALLOC_SHAPED:
            alloc = shaped_alloc_expr(op, t, nd_index, i, "_g_TorchLib")
        elif kind in _UNCOUNTED:
            alloc = f"_g_TorchLib.empty_stat({t}, {stat_shape_expr(op, kind, t, nd_index)})"
        else:
            alloc = f"_g_empty_stat({t}, {names[nd_index]})"
        skip = ([f"{t} is None"] if op.inputs[src].kind != "Tensor" else []) + \
               ([f"not {names[flag]}"] if flag is not None else [])
        rhs = f"None if {' or '.join(skip)} else {alloc}" if skip else alloc
        if want is None:
            lines += [f"{o.name} = _want[{i}]", f"if {o.name} is True:", f"    {o.name} = {rhs}"]
        else:
            lines.append(f"{o.name} = {rhs if want[i] is True else 'None'}")
    x = names[op.first_tensor]
    call_args = ", ".join(names + op.output_names)
    if cpu_only:
        lines += ["_g_follow_threads()", f"_g_kernel({call_args}, 0)"]
        return [indent + line for line in lines]
    lines += [
        f"if {x}.is_cuda:",
        f"    with _g_torch.cuda.device({x}.device):",
        f"        _g_kernel({call_args}, _g_torch.cuda.current_stream({x}.device).cuda_stream)",
        "else:",
        "    _g_follow_threads()",
        f"    _g_kernel({call_args}, 0)",
    ]
    return [indent + line for line in lines]


def _setup_lines(op: Op, indent: str, eager: bool) -> list:
    """Lines that record, on ``ctx``, what the backward needs: forward inputs from ``args`` (as
    the caller passed them: saving an input keeps autograd's in-place checks), outputs from
    the variables of their names. ``eager``: for the eager Function, whose outputs leave out
    the backward_only ones (they are saved, never returned: fewer outputs for autograd to
    wrap, none to mark non-differentiable)."""
    def name(src, k):
        return f"args[{k}]" if src == "in" else op.output_names[k]

    # Not materialized: an output that took no part in the loss arrives as None (no
    # zero-filled read for a pre-norm block's unused `s`, none for the statistics).
    lines = ["ctx.set_materialize_grads(False)"]
    marked = [op.output_names[k] for k in op.non_differentiable_outputs
              if not (eager and op.outputs[k].backward_only)]
    if marked:
        # An output of an absent optional input (batch norm's running statistics) is None.
        optional = [n for n in marked if op.inputs[op.alloc_plan[op._out[n]][1]].kind != "Tensor"]
        if optional:
            lines.append(f"ctx.mark_non_differentiable(*[_g_t for _g_t in ({', '.join(marked)},) "
                         f"if _g_t is not None])")
        else:
            lines.append(f"ctx.mark_non_differentiable({', '.join(marked)})")
    lines.append(f"ctx.save_for_backward({', '.join(name(s, k) for s, k in op.saved)})")
    if op.kept:
        lines.append(f"ctx.nk_kept = ({''.join(f'args[{k}], ' for k in op.kept)})")
    if op.aliases:
        whens = "".join(f"bool(_g_when{n}({', '.join(f'args[{j}]' for j in when_args)})), "
                        for n, (_, _, _, when_args) in enumerate(op.aliases))
        lines.append(f"ctx.nk_aliased = ({whens})")
    if op.zeros_for:
        metas = "".join(f"({o}.shape, {o}.dtype, {o}.device), "
                        for o in (op.output_names[k] for k in op.zeros_for))
        lines.append(f"ctx.nk_zeros = ({metas})")
    return [indent + line for line in lines]


def _backward_lines(op: Op, name: str, call: str, grad_position) -> list:
    """``<name>(ctx, *grads)``: the backward op's arguments gathered by name (saved tensors,
    kept values, incoming gradients, need flags), the op run by ``call`` (a format string
    taking the argument list), each gradient handed to the input it is declared for.
    ``grad_position[k]``: where forward output k's gradient is in ``grads``."""
    bwd = op.backward
    saved = [op.input_names[k] if src == "in" else op.output_names[k] for src, k in op.saved]
    lines = [f"def {name}(ctx, *grads):", "    _needs = ctx.needs_input_grad"]
    if saved:
        lines.append(f"    {', '.join(saved)}, = ctx.saved_tensors")
    if op.kept:
        lines.append(f"    {', '.join(op.input_names[k] for k in op.kept)}, = ctx.nk_kept")
    for inp, (src, i, extra) in zip(bwd.inputs, op.backward_plan):
        if src is FROM_GRAD:
            lines.append(f"    {inp.name} = grads[{grad_position[i]}]")
            if extra is not None:  # rare: only another output took part in the loss
                lines.append(f"    if {inp.name} is None: {inp.name} = _g_zeros(ctx.nk_zeros[{extra}])")
        elif src is FROM_NEED:
            aliased = f" and not ctx.nk_aliased[{extra}]" if extra is not None else ""
            lines.append(f"    {inp.name} = _needs[{i}]{aliased}")
    outs = ", ".join(bwd.output_names)
    lines.append(f"    {outs}, = " if len(bwd.outputs) > 1 else f"    {outs} = ")
    lines[-1] += call.format(", ".join(bwd.input_names))
    grad_of = {k: bwd.output_names[j] for j, k in op.grad_map}
    results = []
    for k in range(len(op.inputs)):
        if k not in grad_of:
            results.append("None")
            continue
        g = grad_of[k]
        for n, (target, source, _, _) in enumerate(op.aliases):
            if target == k:
                g = f"({grad_of[source]} if ctx.nk_aliased[{n}] else {g})"
        results.append(f"{g} if _needs[{k}] else None")
    lines.append(f"    return ({', '.join(results)},)")
    return lines + [""]


# Note [Optimistic eager calls]. A call that records no graph first runs the CPU kernel on
# its arguments as given — no ndim checks, no contiguity tests, no relayouts in Python — and
# takes the checked path only when anything in that try raises (the kernel refusing them).
# The checked path then decides: it copies, or raises the error that names the argument. This is
# sound because the core validates everything it reads (ranks, shapes, dtypes, strides,
# alignment, devices; validate.hpp) before it computes or writes anything, and accepts only
# layouts it computes exactly (a row-strided x gives a contiguous copy's bits), and a
# retried call starts again from its unchanged inputs (outputs are fresh; batch norm's
# updated running statistics are outputs that start as copies). It saves ~0.8 us of a ~4 us [1, 4096] layer norm (2 threads, the test machine), the
# difference between trailing and leading F.layer_norm there. Ops with custom preparations
# (which may change values, not just layouts) and CUDA tensors (device guard, stream) always
# take the checked path.


def _optimistic(op: Op, x: str, ret: str, want) -> list:
    """The first try of Note [Optimistic eager calls] (no lines for ops that cannot)."""
    if op.custom_preps:
        return []
    # Row inputs that are not contiguous (dy from y.sum() is an expanded tensor) go straight to
    # the checked path: one test here instead of a refused kernel call.
    names = op.input_names
    guard = [f"not {x}.is_cuda"]
    for k, _, _ in op.row_inputs:
        n = names[k]
        guard.append(f"{n}.is_contiguous()" if op.inputs[k].kind == "Tensor"
                     else f"({n} is None or {n}.is_contiguous())")
    return (["    try:", f"        if {' and '.join(guard)}:"]
            + _run_body(op, "            ", want, checked=False)
            + [f"            return {ret}", "    except Exception:", "        pass"])


def _generate(op: Op, overload, bwd: Optional["TorchOp"]) -> dict:
    """The source and functions of ``op``'s torch path (Note [Generated eager code]):

    - ``run(args, want) -> [outputs]``: the custom op's real implementation;
    - ``call(args, want)`` and ``__call__(self, *args)``: the eager entry points (dispatch,
      then the run body inline: one Python frame for the whole call);
    - forward ops: ``forward(ctx, *args)`` and ``backward(ctx, *grads)`` of the eager
      ``autograd.Function`` (the backward runs the backward op's eager path), and
      ``setup_context`` / ``backward_op`` for the custom op's formula (through ``torch.ops``).
    """
    names = op.input_names
    for n in names + op.output_names + (op.backward.input_names if op.backward else ()):
        if n.startswith("_g_") or n in _RESERVED:
            raise ValueError(f"normkit::{op.name}: {n!r} is reserved in generated code")
    x = names[op.first_tensor]
    unpack = f"    {', '.join(names)}, = args"
    ret = op.output_names[0] if len(op.outputs) == 1 else f"({', '.join(op.output_names)},)"
    body = _run_body(op, "    ")
    # The custom op where torch's machinery must see it (TorchOp's docstring).
    dispatch = [
        f"    if (_g_is_compiling() or type({x}) is not _g_Tensor or {x}.is_meta",
        "            or _g_dispatch_modes() or _g_functorch_active()):",
        "        return _g_overload(*args)",
    ]
    if bwd is not None:
        grad_inputs, target = op.differentiable_inputs, "_g_apply"
    else:  # no formula: record a node that refuses a backward (double backward)
        grad_inputs, target = [k for k, i in enumerate(op.inputs) if i.is_tensor], "_g_overload"
    # getattr: through the functional API a parameter may be a NumPy array next to a torch x.
    needs = " or ".join(f"{names[k]}.requires_grad" if k == op.first_tensor else
                        f"getattr({names[k]}, 'requires_grad', False)" for k in grad_inputs)
    dispatch.append(f"    if _g_grad_enabled() and ({needs}):")
    if bwd is not None and any(o.backward_only for o in op.outputs):
        # The eager Function leaves the backward_only outputs out: None in their places.
        returned = [k for k, o in enumerate(op.outputs) if not o.backward_only]
        pick = {k: ("_r" if len(returned) == 1 else f"_r[{n}]") for n, k in enumerate(returned)}
        full = ", ".join(pick.get(k, "None") for k in range(len(op.outputs)))
        dispatch += [f"        _r = {target}(*args)", f"        return ({full},)"]
    else:
        dispatch.append(f"        return {target}(*args)")
    lines = (["def run(args, _want):", unpack] + body
             + [f"    return [{', '.join(op.output_names)}]", ""]
             + ["def call(args, _want):", unpack] + dispatch
             + _optimistic(op, x, ret, None) + body + [f"    return {ret}", ""]
             + ["def __call__(self, *args):", unpack] + dispatch
             + _optimistic(op, x, ret, op.no_grad_want)
             + _run_body(op, "    ", op.no_grad_want) + [f"    return {ret}", ""])
    g = dict(_GLOBALS, _g_kernel=op.kernel, _g_overload=overload,
             _g_no_grad_want=op.no_grad_want, _g_all_want=op.all_want)
    for n, (_, prep, _) in enumerate(op.custom_preps):
        g[f"_g_prep{n}"] = prep
    for i, (kind, _, nd_index, _) in enumerate(op.alloc_plan):
        if kind == ALLOC_SHAPED:
            g[f"_g_shape{i}"] = nd_index[0]
    if bwd is not None:
        # The eager Function returns the outputs that are not backward_only.
        returned = [k for k, o in enumerate(op.outputs) if not o.backward_only]
        fn_ret = ", ".join(op.output_names[k] for k in returned)
        fn_ret = fn_ret if len(returned) == 1 else f"({fn_ret},)"
        outs = f"    {', '.join(op.output_names)}, = " + ("(output,)" if len(op.outputs) == 1
                                                        else "output")
        lines += (["def forward(ctx, *args):", unpack, "    _want = _g_all_want"] + body
                  + _setup_lines(op, "    ", eager=True) + [f"    return {fn_ret}", ""]
                  + ["def setup_context(ctx, inputs, output):", "    args = inputs", outs]
                  + _setup_lines(op, "    ", eager=False) + [""])
        # Eager backward: the backward op's own eager path (its dispatch sends a call that
        # records a graph — create_graph=True — to the custom op, which refuses it).
        lines += _backward_lines(op, "backward", "_g_bwd_call(({},), _g_bwd_want)",
                                 {k: n for n, k in enumerate(returned)})
        lines += _backward_lines(op, "backward_op", "_g_bwd_op({})",
                                 {k: k for k in range(len(op.outputs))})
        g.update(_g_bwd_call=bwd.call, _g_bwd_want=bwd.op.all_want, _g_bwd_op=bwd.overload)
        for n, (_, _, when, _) in enumerate(op.aliases):
            g[f"_g_when{n}"] = when
    src = "\n".join(lines)
    exec(compile(src, f"<normkit generated: {op.name}>", "exec"), g)
    g["_g_source"] = src
    return g


def _placeholders(op: Op, args, outs):
    """Custom-op outputs cannot be None: a zero-size tensor stands for one not computed."""
    if None in outs:
        x = args[op.first_tensor]
        outs = [x.new_empty((0,)) if o is None else o for o in outs]
    return outs[0] if len(outs) == 1 else tuple(outs)


def _apply_of(function):
    """``function.apply`` without ``torch.autograd.Function.apply``'s Python layer, which
    serves functorch (argument binding for setup_context-style Functions, unwrapping dead
    functorch wrappers) and costs a few microseconds a call: TorchOp never takes this path
    under a functorch transform (it calls the custom op there). Falls back to the public
    ``apply`` where torch's internals differ."""
    raw = getattr(getattr(torch._C, "_FunctionBase", None), "__dict__", {}).get("apply")
    try:
        return raw.__get__(None, function)
    except (AttributeError, TypeError):
        return function.apply


# ---------------------------------------------------------------------------------------
# The eager entry point
# ---------------------------------------------------------------------------------------


class TorchOp:
    """A declared op in torch. Call it with the op's arguments in declared order: it returns
    what ``torch.ops.normkit.<name>`` returns, except that a call that records no autograd
    graph leaves the ``backward_only`` outputs ``None``. :meth:`call` ``(args, want)`` chooses
    which outputs such a call computes (``Op.allocate``'s ``want``).

    Where each call goes: to the custom op while torch.compile / torch.export trace
    (``torch.compiler.is_compiling()``), for tensor subclasses (FakeTensor, DTensor, ...),
    meta tensors, under TorchDispatchModes and functorch transforms — wherever torch's own
    machinery must see the op. Otherwise straight to the kernel when no autograd graph is
    recorded, and through the op's eager ``autograd.Function`` when one is. Each op gets its
    own subclass, whose ``__call__`` is generated (Note [Generated eager code]).
    """

    #: The generated source of this op's eager path.
    source: str = ""

    def __init__(self, op: Op, custom, backward: Optional["TorchOp"]):
        self.op = op
        self.custom_op = custom
        self.overload = custom._opoverload  # torch.ops.normkit.<name>.default
        self.backward = backward
        self.no_grad_want = op.no_grad_want


def _make_torch_op(op: Op, custom, bwd: Optional[TorchOp]) -> TorchOp:
    g = _generate(op, custom._opoverload, bwd)
    function = None
    if bwd is not None:
        # The eager Function: old-style forward(ctx, ...) (a setup_context-style Function
        # makes Function.apply bind every call's arguments through inspect.signature).
        function = type(f"{op.name}_function", (torch.autograd.Function,),
                        {"forward": staticmethod(g["forward"]),
                         "backward": staticmethod(g["backward"]),
                         "__doc__": f"Eager autograd of normkit::{op.name} (generated)."})
        g["_g_apply"] = _apply_of(function)
    cls = type(f"TorchOp_{op.name}", (TorchOp,),
               {"__call__": g["__call__"], "source": g["_g_source"]})
    top = cls(op, custom, bwd)
    top.run, top.call, top.function = g["run"], g["call"], function
    top._generated = g
    return top


def register(op: Op) -> TorchOp:
    """Registers ``op`` (and its backward, first) as ``torch.ops.normkit.<name>``; returns its
    :class:`TorchOp`. Registering the same declaration again returns the same object."""
    if op.name in _REGISTERED:
        if _REGISTERED[op.name].op is not op:
            raise ValueError(f"normkit::{op.name}: another op of this name is registered")
        return _REGISTERED[op.name]
    bwd = register(op.backward) if op.backward is not None else None
    want = op.all_want
    # A fake implementation must give the real one's strides: outputs that follow an input's
    # strides are allocated from the prepared input (its layout fixed as the real path fixes
    # it); the others are C-contiguous whatever the input, so the fake only checks.
    follows_layout = any(plan[0] is ALLOC_STRIDED for plan in op.alloc_plan)
    runner = []  # the generated run, bound once the op exists

    def real(*args):
        return _placeholders(op, args, runner[0](args, want))

    def fake(*args):
        if follows_layout:
            prepared = op.prepare(TorchLib, args)
        else:
            op.check(args)
            prepared = args
        return _placeholders(op, args, op.allocate(TorchLib, prepared, want))

    real.__doc__ = op.doc
    custom = torch.library.custom_op(f"{NAMESPACE}::{op.name}", real, mutates_args=(),
                                     schema=op.schema())
    custom.register_fake(fake)
    top = _make_torch_op(op, custom, bwd)
    runner.append(top.run)
    if bwd is not None:
        custom.register_autograd(top._generated["backward_op"],
                                 setup_context=top._generated["setup_context"])
    _REGISTERED[op.name] = top
    return top
