"""One declaration per op (DESIGN.md, "One declaration per op"): the vocabulary.

An op is declared once, as an :class:`Op`: its name, its inputs in order (each a tensor, an
optional tensor, a float, an int or a bool; which tensors are differentiable; how each tensor
is laid out before the kernel reads it), its outputs (how each is allocated; which are
differentiable), the kernel that runs it and, for a forward op, the :class:`Op` of its
backward. Everything else is derived from that declaration:

- the torch custom op (``torch.ops.normkit.<name>``: schema, real and fake implementations)
  and its autograd formula, in ``normkit.torch._registry``;
- the eager torch path from the same declaration, in the same file: Python code generated
  from the plans below (no dispatcher; a plain ``torch.autograd.Function`` when a graph is
  recorded), which is what normkit's torch functions and modules run;
- output allocation for every array library (NumPy, torch, any DLPack array):
  :meth:`Op.run` interprets the same plans through an adapter from ``normkit._arrays``, so the
  functional API allocates exactly what the torch op allocates.

This module imports neither torch nor NumPy. An op family's declarations live in the
family's own file (``_row_norm_ops.py`` for layer / RMS / add & norm); adding an op adds a
declaration and a one-line registration on the torch side, never an entry in a central
table.

Conventions (checked when the :class:`Op` is built, so a wrong declaration fails at import):

- The kernel is called positionally: every input in declared order (prepared, see below),
  then every output (an array, or ``None`` for one not computed), then the stream (an int:
  0 on the CPU). Its parameter names must be the inputs' and outputs' names, then
  ``stream``: the order is checked, not trusted.
- Preparation of a tensor input before the kernel sees it: ``rows=`` (the last ``n`` dims made
  C-contiguous among themselves, leading dims left strided; ``n`` an int input's name or a
  constant), ``contiguous=True`` (one C-contiguous array), or ``prep=`` (a function
  ``prep(lib, t, *others)`` whose further parameters name other inputs; those are prepared
  first). Absent (``None``) optional tensors are never prepared.
- Outputs are allocated from the prepared inputs, by :class:`Like` (C-contiguous, or with
  the input's strides for elementwise ops) or :class:`Stat` (one value per row). An output
  allocated like an optional tensor that is absent is not computed (``None``). An output
  ``o`` of an op that has a bool input ``need_o`` is computed only when that flag is true
  (gradients nobody asked for).
- ``backward_only=True`` outputs (saved statistics; never differentiable) are skipped by calls
  that record no autograd graph and kept out of the eager autograd Function's outputs (saved
  for backward only); the kernel must accept ``None`` for them. The custom op returns them.
- Backward wiring, by name. Each input of the backward op is resolved against the forward:
  ``d<out>`` is the incoming gradient of forward output ``<out>`` (``None`` for an optional
  input when autograd has none; zeros for a required one); ``need_<grad>`` says whether the
  forward input that backward output ``<grad>`` belongs to needs a gradient; any other name
  is the forward input or output of that name (tensors are saved for backward, everything
  else kept). Each backward output names the forward input it is the gradient of
  (``grad_of=``); the forward's differentiable inputs must all be covered.

Examples: DyT (SPEC §6) is declared in ``normkit/_dyt.py`` (an elementwise op with a scalar
parameter, stride-preserving outputs, custom layout preps and a channels-first/last flag),
and registered on the torch side in ``normkit/torch/_dyt.py`` with one line,
``DYT = register(decl.DYT)``. AdaNorm (SPEC §8, ``ADA_NORM`` / ``ADA_NORM_BWD`` in
``normkit/_ada_norm.py``) is the smallest complete pair to read first: a row norm with a
rows input, scalars, one output like ``x``, two saved statistics and a one-gradient backward.
"""

from __future__ import annotations

import inspect
from typing import Callable, List, Optional, Sequence, Tuple, Union

__all__ = [
    "Tensor", "OptionalTensor", "Float", "Int", "Bool", "Like", "Stat", "ChannelStat",
    "GroupStat", "SliceStat", "Shaped", "Out",
    "SameGrad", "Op",
    "DeclarationError",
]

TENSOR, OPTIONAL_TENSOR = "Tensor", "Tensor?"
_SCALAR_KINDS = ("float", "int", "bool")

class DeclarationError(TypeError):
    """A declaration that contradicts itself (raised at import, naming the op)."""


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------


class Input:
    __slots__ = ("name", "kind", "differentiable", "rows", "contiguous", "prep", "shape_only")

    def __init__(self, name: str, kind: str, differentiable: bool = False,
                 rows: Union[str, int, None] = None, contiguous: bool = False,
                 prep: Optional[Callable] = None, shape_only: bool = False):
        self.name, self.kind = name, kind
        self.differentiable, self.rows, self.contiguous, self.prep = (
            differentiable, rows, contiguous, prep)
        self.shape_only = shape_only

    @property
    def is_tensor(self) -> bool:
        return self.kind in (TENSOR, OPTIONAL_TENSOR)

    def __repr__(self) -> str:
        return f"{self.kind} {self.name}"


def Tensor(name: str, *, differentiable: bool = False, rows: Union[str, int, None] = None,
           contiguous: bool = False, prep: Optional[Callable] = None) -> Input:
    """A required tensor input (see the module docstring for ``rows``, ``contiguous``, ``prep``)."""
    return Input(name, TENSOR, differentiable, rows, contiguous, prep)


def OptionalTensor(name: str, *, differentiable: bool = False,
                   rows: Union[str, int, None] = None, contiguous: bool = False,
                   prep: Optional[Callable] = None, shape_only: bool = False) -> Input:
    """A tensor input that may be ``None`` (``Tensor?`` in the schema). ``shape_only=True``:
    the kernel reads its presence, shape and dtype, never its data (a backward's ``bias``,
    the template of ``dbias``): :meth:`Op.traffic` counts no bytes read for it."""
    return Input(name, OPTIONAL_TENSOR, differentiable, rows, contiguous, prep, shape_only)


def Float(name: str) -> Input:
    return Input(name, "float")


def Int(name: str) -> Input:
    return Input(name, "int")


def Bool(name: str) -> Input:
    return Input(name, "bool")


# ---------------------------------------------------------------------------------------
# Outputs and how they are allocated
# ---------------------------------------------------------------------------------------


class Like:
    """An output shaped and typed like input ``of``, on its device: C-contiguous (the
    default; the row norms' rule, whatever the input's strides), or with ``of``'s strides
    (``strides="preserve"``: ``torch.empty_like``'s rule, ``np.empty_like``'s for NumPy) for
    elementwise ops, so that a channels_last tensor gives a channels_last result. Also the
    rule for a parameter's gradient (``Like("weight")``: the parameter's shape and dtype)."""

    def __init__(self, of: str, *, strides: str = "contiguous"):
        if strides not in ("contiguous", "preserve"):
            raise DeclarationError(f"Like({of!r}): strides must be 'contiguous' or 'preserve'")
        self.of, self.strides = of, strides


class Stat:
    """One value per row of input ``of``: the shape of its leading dims (all but the last
    ``ndim``, an int input's name), dtype float32 — float64 for float64 ``of`` (SPEC §0)."""

    def __init__(self, of: str, ndim: str):
        self.of, self.ndim = of, ndim


class ChannelStat:
    """One value per channel of input ``of`` (the channel-wise families: batch norm's saved
    statistics): shape ``(C,)`` with C = ``of.shape[-1]`` when ``channels_last`` (a bool
    input's name, or a constant) is true, else ``of.shape[1]``; dtype float32 — float64 for
    float64 ``of`` (SPEC §0). Not counted by :meth:`Op.traffic` (C values next to x's)."""

    def __init__(self, of: str, channels_last: Union[str, bool]):
        self.of, self.channels_last = of, channels_last


class GroupStat:
    """One value per sample and group of input ``of`` (group / instance norm's saved
    statistics): shape ``(N, G)`` with N = ``of.shape[0]`` and G the int input named
    ``groups`` — or, given ``channels_last`` instead (as :class:`ChannelStat`'s), one group
    per channel, ``(N, C)`` (instance norm); dtype as :class:`Stat`. Not counted by
    :meth:`Op.traffic`."""

    def __init__(self, of: str, groups: Optional[str] = None, *,
                 channels_last: Union[str, bool, None] = None):
        if (groups is None) == (channels_last is None):
            raise DeclarationError(f"GroupStat({of!r}): give groups= or channels_last=")
        self.of, self.groups, self.channels_last = of, groups, channels_last


class SliceStat:
    """Statistics shaped like a slice of input ``of``'s shape, ``of.shape[start:stop]``
    (constants; BLN's batch statistics ``x.shape[1:]`` and feature statistics
    ``x.shape[:-1]``); dtype as :class:`Stat`. Not counted by :meth:`Op.traffic`."""

    def __init__(self, of: str, start: Optional[int] = None, stop: Optional[int] = None):
        self.of, self.start, self.stop = of, start, stop


class Shaped:
    """An output whose shape is computed from the (prepared) inputs: ``shape(*inputs)`` (its
    parameters name inputs) returns a tuple — the recurrent sequences' ``y`` ``(T, B, H)``,
    their states and reserve. Dtype and device of input ``of``; ``stat=True``: float32 (float64
    for float64 ``of``) as :class:`Stat`. Written only with shape arithmetic, so it also runs on
    FakeTensors and symbolic sizes. Not counted by :meth:`Op.traffic`."""

    def __init__(self, of: str, shape: Callable, *, stat: bool = False):
        self.of, self.shape, self.stat = of, shape, stat


class Out:
    """An output: its name, its allocation (:class:`Like` / :class:`Stat` /
    :class:`ChannelStat` / :class:`GroupStat` / :class:`SliceStat`) and its role.

    ``differentiable=False``: autograd marks it non-differentiable (saved statistics).
    ``backward_only=True``: only a call that records autograd needs it (see module docstring).
    ``grad_of``: in a backward op, the forward input this output is the gradient of.
    """

    def __init__(self, name: str,
                 alloc: Union[Like, Stat, ChannelStat, GroupStat, SliceStat, Shaped], *,
                 differentiable: bool = True,
                 backward_only: bool = False, grad_of: Optional[str] = None):
        self.name, self.alloc = name, alloc
        self.differentiable, self.backward_only, self.grad_of = (
            differentiable, backward_only, grad_of)

    def __repr__(self) -> str:
        return f"Tensor {self.name}"


class SameGrad:
    """``target``'s gradient *is* ``source``'s whenever ``when(...)`` holds (its parameters
    name forward inputs). The backward op is then asked not to compute ``target``'s own
    (``need_d<target>`` false) and autograd is handed ``source``'s tensor for both, as
    torch's AddBackward does: e.g. ``dresidual = residual_scale·dx`` is ``dx`` itself when
    the scale is 1."""

    def __init__(self, target: str, source: str, when: Callable[..., bool]):
        self.target, self.source, self.when = target, source, when


# ---------------------------------------------------------------------------------------
# The op
# ---------------------------------------------------------------------------------------

# How an output is allocated (Op.alloc_plan).
ALLOC_CONTIGUOUS, ALLOC_STRIDED, ALLOC_STAT = "contiguous", "strided", "stat"
ALLOC_CHANNEL, ALLOC_GROUP, ALLOC_GROUP_C, ALLOC_SLICE = "channel", "group", "group_c", "slice"
ALLOC_SHAPED = "shaped"
# Small statistics next to x's bytes, and computed shapes: not counted by Op.traffic.
_UNCOUNTED = (ALLOC_CHANNEL, ALLOC_GROUP, ALLOC_GROUP_C, ALLOC_SLICE, ALLOC_SHAPED)


def shaped_alloc_expr(op, t: str, nd_index, i: int, lib: str) -> str:
    """Source allocating output i (a :class:`Shaped`) through adapter ``lib``; the generated
    code holds its shape function as ``_shape<i>`` (``_g_shape<i>`` in the torch path)."""
    _, deps, stat = nd_index
    prefix = "_g_" if lib.startswith("_g_") else "_"
    call = f"{prefix}shape{i}({', '.join(op.input_names[j] for j in deps)})"
    return f"{lib}.empty_stat({t}, {call})" if stat else f"{lib}.empty_like_x({t}, {call})"


def channel_count_expr(t: str, cl: str) -> str:
    """Source of the ``(C,)`` shape of a :class:`ChannelStat` of tensor ``t`` (``cl``: the
    source of its channels_last flag), as the generated code writes it."""
    return f"({t}.shape[-1] if {cl} else {t}.shape[1],)"


def group_count_expr(kind: str, t: str, g: str) -> str:
    """Source of the ``(N, G)`` shape of a :class:`GroupStat` (``g``: the groups input's
    name, or for ALLOC_GROUP_C the source of the channels_last flag)."""
    if kind is ALLOC_GROUP_C:
        return f"({t}.shape[0], {t}.shape[-1] if {g} else {t}.shape[1])"
    return f"({t}.shape[0], {g})"


def stat_shape_expr(op, kind: str, t: str, nd_index) -> str:
    """Source of the shape of a channel or group statistic (the generated code's)."""
    if kind is ALLOC_CHANNEL:
        return channel_count_expr(t, op.channel_flag(nd_index))
    if kind is ALLOC_GROUP_C:
        return group_count_expr(kind, t, op.channel_flag(nd_index))
    if kind is ALLOC_SLICE:
        start, stop = nd_index
        return f"tuple({t}.shape)[{'' if start is None else start}:{'' if stop is None else stop}]"
    return group_count_expr(kind, t, op.input_names[nd_index])
# Sources of a backward op's inputs (see Op._wire_backward).
FROM_SAVED, FROM_KEPT, FROM_GRAD, FROM_NEED = "saved", "kept", "grad", "need"


def _param_names(fn: Callable, what: str) -> List[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        raise DeclarationError(f"{what}: cannot read the signature of {fn!r}") from None
    if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        raise DeclarationError(f"{what}: expected plain positional parameters")
    return [p.name for p in params]


# Note [Generated run]: Op.run's steps (prepare, allocate, kernel) as one straight-line
# function per op, generated from its plans at declaration time like the torch eager path
# (normkit.torch._registry, Note [Generated eager code]): the plan interpreter's loops, zips
# and tuple unpacking cost ~3 us per call on the test machine, a [1, 4096] NumPy
# forward + backward ~20% (Op.run_plans keeps the interpreter; the tests compare the two).
_RUN_RESERVED = ("lib", "args", "want", "stream", "len", "tuple", "None", "True")


def _generate_run(op) -> Callable:
    names = op.input_names
    for n in names + op.output_names:
        if n.startswith("_") or n in _RUN_RESERVED:
            op._fail(f"name {n!r} is reserved in generated code")
    lines = ["def run(lib, args, want, stream):", f"    {', '.join(names)}, = args"]
    for t_index, nd_index, t_name, nd_name in op.ndim_checks:
        t, nd = names[t_index], names[nd_index]
        guard = f"{t} is not None and " if op.inputs[t_index].kind != TENSOR else ""
        lines.append(f"    if {guard}not 1 <= {nd} <= len({t}.shape): "
                     f"_bad_ndim({t_name!r}, len({t}.shape), {nd_name!r}, {nd})")

    def guarded(k, call):
        n = names[k]
        if op.inputs[k].kind == TENSOR:
            lines.append(f"    {n} = {call}")
        else:
            lines.append(f"    if {n} is not None: {n} = {call}")

    for k, nd_index, nd in op.row_inputs:
        guarded(k, f"lib.rows({names[k]}, {nd if nd_index is None else names[nd_index]})")
    for k in op.contiguous_inputs:
        guarded(k, f"lib.contiguous({names[k]})")
    g = {"_bad_ndim": bad_ndim, "_kernel": op.kernel}
    for n, (k, prep, deps) in enumerate(op.custom_preps):
        g[f"_prep{n}"] = prep
        guarded(k, f"_prep{n}(lib, {names[k]}{''.join(', ' + names[j] for j in deps)})")
    for i, (o, (kind, src, nd_index, flag)) in enumerate(zip(op.outputs, op.alloc_plan)):
        t = names[src]
        if kind is ALLOC_CONTIGUOUS:
            alloc = f"lib.empty_like_x({t})"
        elif kind is ALLOC_STRIDED:
            alloc = f"lib.empty_like_strided({t})"
        elif kind is ALLOC_SHAPED:
            g[f"_shape{i}"] = nd_index[0]
            alloc = shaped_alloc_expr(op, t, nd_index, i, "lib")
        elif kind in _UNCOUNTED:
            alloc = f"lib.empty_stat({t}, {stat_shape_expr(op, kind, t, nd_index)})"
        else:
            alloc = (f"lib.empty_stat({t}, tuple({t}.shape)[: len({t}.shape) - "
                     f"{names[nd_index]}])")
        skip = ([f"{t} is None"] if op.inputs[src].kind != TENSOR else []) + \
               ([f"not {names[flag]}"] if flag is not None else [])
        rhs = f"None if {' or '.join(skip)} else {alloc}" if skip else alloc
        lines += [f"    {o.name} = want[{i}]", f"    if {o.name} is True: {o.name} = {rhs}"]
    outs = ", ".join(op.output_names)
    lines += [f"    _kernel({', '.join(names)}, {outs}, stream)", f"    return [{outs}]"]
    src = "\n".join(lines) + "\n"
    exec(compile(src, f"<normkit generated run: {op.name}>", "exec"), g)
    g["run"].source = src
    return g["run"]


def bad_ndim(t_name: str, t_ndim: int, nd_name: str, nd) -> None:
    # The core checks this too, but a statistic cannot be shaped before it holds.
    raise ValueError(f"{nd_name}: expected 1 <= {nd_name} <= {t_name}.dim() = {t_ndim}, got {nd}")


class Op:
    """One declared op. ``backward`` (forward ops only) is the backward's :class:`Op`;
    ``same_grad`` lists :class:`SameGrad` shortcuts; ``doc`` is shown in the torch op's
    docstring. See the module docstring for every convention."""

    def __init__(self, name: str, inputs: Sequence[Input], outputs: Sequence[Out],
                 kernel: Callable, *, backward: Optional["Op"] = None,
                 same_grad: Sequence[SameGrad] = (), doc: str = ""):
        self.name, self.doc = name, doc
        self.inputs: Tuple[Input, ...] = tuple(inputs)
        self.outputs: Tuple[Out, ...] = tuple(outputs)
        self.kernel, self.backward, self.same_grad = kernel, backward, tuple(same_grad)
        self.input_names = tuple(i.name for i in self.inputs)
        self.output_names = tuple(o.name for o in self.outputs)
        self._in = {n: k for k, n in enumerate(self.input_names)}
        self._out = {n: k for k, n in enumerate(self.output_names)}
        if len(self._in) != len(self.inputs) or len(self._out) != len(self.outputs) or \
                set(self._in) & set(self._out):
            self._fail("input and output names must be unique")
        if not self.outputs:
            self._fail("an op needs at least one output")
        for o in self.outputs:
            if o.backward_only and o.differentiable:
                self._fail(f"output {o.name!r}: a backward_only output is not differentiable")
        tensors = [k for k, i in enumerate(self.inputs) if i.is_tensor]
        if not tensors or self.inputs[tensors[0]].kind != TENSOR:
            self._fail("the first tensor input must be required (it gives device and stream)")
        self.first_tensor = tensors[0]
        expect = list(self.input_names) + list(self.output_names) + ["stream"]
        got = _param_names(kernel, f"{name}: kernel")
        if got != expect:
            self._fail(f"kernel parameters must be {expect}, got {got}")
        self._bind_preparation()
        self._bind_outputs()
        self._run = _generate_run(self)
        self.differentiable_inputs = tuple(
            k for k, i in enumerate(self.inputs) if i.differentiable)
        for k in self.differentiable_inputs:
            if not self.inputs[k].is_tensor:
                self._fail(f"input {self.input_names[k]!r}: only tensors are differentiable")
            if self.inputs[k].shape_only:
                self._fail(f"input {self.input_names[k]!r}: a shape_only input is not differentiable")
        if backward is not None:
            self._wire_backward()
        elif self.same_grad:
            self._fail("same_grad needs a backward")

    def _fail(self, why: str):
        raise DeclarationError(f"op {self.name!r}: {why}")

    def _input(self, name: str, what: str, tensor: Optional[bool] = None) -> int:
        if name not in self._in:
            self._fail(f"{what} names {name!r}, which is not an input")
        k = self._in[name]
        if tensor is True and not self.inputs[k].is_tensor:
            self._fail(f"{what} names {name!r}, which is not a tensor")
        if tensor is False and self.inputs[k].kind != "int":
            self._fail(f"{what} names {name!r}, which is not an int")
        return k

    # -- preparation and allocation, as data ---------------------------------------------
    #
    # The declaration is compiled into plain tuples (the "plans" below) that two interpreters
    # read: Op.prepare / Op.allocate for any array library (through an adapter of
    # normkit._arrays), and the torch eager runner (normkit.torch._registry), which makes the
    # same decisions with direct torch calls because a call there costs a few microseconds in
    # all. The plans are the single source of both.

    def _bind_preparation(self):
        checks, seen = [], set()

        def ndim_index(t_index, nd_name, what):
            nd_index = self._input(nd_name, what, tensor=False)
            if nd_name not in seen:  # one check per ndim input, on the first tensor using it
                seen.add(nd_name)
                checks.append((t_index, nd_index, self.input_names[t_index], nd_name))
            return nd_index

        rows, contiguous, custom = [], [], {}
        for k, inp in enumerate(self.inputs):
            given = [inp.rows is not None, inp.contiguous, inp.prep is not None]
            if sum(given) > 1:
                self._fail(f"input {inp.name!r}: choose one of rows=, contiguous=, prep=")
            if any(given) and not inp.is_tensor:
                self._fail(f"input {inp.name!r}: only tensors are prepared")
            if isinstance(inp.rows, str):
                rows.append((k, ndim_index(k, inp.rows, f"input {inp.name!r} rows="), None))
            elif inp.rows is not None:
                rows.append((k, None, int(inp.rows)))
            elif inp.contiguous:
                contiguous.append(k)
            elif inp.prep is not None:
                params = _param_names(inp.prep, f"{self.name}: prep of {inp.name!r}")
                if params[:2] != ["lib", inp.name]:
                    self._fail(f"prep of {inp.name!r}: expected parameters (lib, {inp.name}, ...)")
                custom[k] = (inp.prep, tuple(self._input(n, f"prep of {inp.name!r}")
                                             for n in params[2:]))
        # Custom preps run after the built-in ones, each after the custom preps it names, so
        # every prep sees the inputs it names already prepared.
        order, state = [], {}

        def visit(k):
            if state.get(k) == "done":
                return
            if state.get(k) == "busy":
                self._fail("prep dependencies form a cycle")
            state[k] = "busy"
            for j in custom[k][1]:
                if j in custom:
                    visit(j)
            state[k] = "done"
            order.append(k)

        for k in custom:
            visit(k)
        #: (tensor index, ndim index, tensor name, ndim name): 1 <= nd <= tensor.dim().
        self.ndim_checks = checks
        #: (input index, ndim input index or None, constant ndim): rows made compact.
        self.row_inputs = tuple(rows)
        #: input indices made C-contiguous.
        self.contiguous_inputs = tuple(contiguous)
        #: (input index, prep function, indices of the inputs it names), in running order.
        self.custom_preps = tuple((k, custom[k][0], custom[k][1]) for k in order)
        self._ndim_seen = seen

    def _bind_outputs(self):
        plan = []
        for o in self.outputs:
            src = self._input(o.alloc.of, f"output {o.name!r}", tensor=True)
            nd_index = None
            if isinstance(o.alloc, ChannelStat) or (isinstance(o.alloc, GroupStat)
                                                     and o.alloc.groups is None):
                kind = ALLOC_CHANNEL if isinstance(o.alloc, ChannelStat) else ALLOC_GROUP_C
                cl = o.alloc.channels_last
                if isinstance(cl, str):
                    nd_index = self._input(cl, f"output {o.name!r} channels_last")
                    if self.inputs[nd_index].kind != "bool":
                        self._fail(f"output {o.name!r}: channels_last must name a bool input")
                else:
                    nd_index = bool(cl)  # a constant
            elif isinstance(o.alloc, SliceStat):
                kind = ALLOC_SLICE
                nd_index = (o.alloc.start, o.alloc.stop)
            elif isinstance(o.alloc, Shaped):
                kind = ALLOC_SHAPED
                deps = tuple(self._input(n, f"output {o.name!r} shape")
                             for n in _param_names(o.alloc.shape, f"{self.name}: shape of {o.name!r}"))
                nd_index = (o.alloc.shape, deps, o.alloc.stat)
            elif isinstance(o.alloc, GroupStat):
                kind = ALLOC_GROUP
                nd_index = self._input(o.alloc.groups, f"output {o.name!r} groups", tensor=False)
            elif isinstance(o.alloc, Stat):
                kind = ALLOC_STAT
                nd_index = self._input(o.alloc.ndim, f"output {o.name!r}", tensor=False)
                if o.alloc.ndim not in self._ndim_seen:
                    self._ndim_seen.add(o.alloc.ndim)
                    self.ndim_checks.append((src, nd_index, o.alloc.of, o.alloc.ndim))
            else:
                kind = ALLOC_STRIDED if o.alloc.strides == "preserve" else ALLOC_CONTIGUOUS
            flag = self._in.get("need_" + o.name)
            if flag is not None and self.inputs[flag].kind != "bool":
                self._fail(f"input 'need_{o.name}' must be a bool")
            plan.append((kind, src, nd_index, flag))
        #: (allocation kind, template input index, ndim input index or None, need-flag input
        #: index or None) per output.
        self.alloc_plan = tuple(plan)
        self.ndim_checks = tuple(self.ndim_checks)
        del self._ndim_seen
        #: ``want`` of a call that records no autograd graph (backward_only outputs skipped).
        self.no_grad_want = tuple(None if o.backward_only else True for o in self.outputs)
        self.all_want = (True,) * len(self.outputs)

    def traffic(self, nbytes, stat_bytes: int = 0, *, training: bool = False,
                flags=None) -> int:
        """The bytes one call must move at least, from the declaration: every present tensor
        input read once (``shape_only`` ones not at all) and every output it computes written
        once. ``nbytes`` maps each present tensor input to its size in bytes (absent ones
        are left out); ``stat_bytes`` is the size of one :class:`Stat` output; ``training``
        counts the ``backward_only`` outputs too; ``flags`` gives the bool inputs (an output
        with a false ``need_<name>`` is not computed). The benchmark's %-of-roof figures
        divide these counts by the time (normkit.bench.cases.bytes_moved)."""
        flags = flags or {}
        total = sum(nbytes[i.name] for i in self.inputs
                    if i.is_tensor and not i.shape_only and i.name in nbytes)
        for o, (kind, src, _, flag) in zip(self.outputs, self.alloc_plan):
            of = self.input_names[src]
            if (of not in nbytes or (o.backward_only and not training)
                    or (flag is not None and not flags.get(self.input_names[flag], False))):
                continue
            if kind not in _UNCOUNTED:
                total += stat_bytes if kind is ALLOC_STAT else nbytes[of]
        return total

    def training_traffic(self, nbytes, stat_bytes: int = 0, scalars=None,
                         grads: Optional[Sequence[str]] = None) -> int:
        """A forward op's training forward plus its backward, in bytes (:meth:`traffic` of
        each): the backward reads the incoming gradients of the outputs in ``grads`` (default:
        the first output only) and what the forward saved, and writes the gradients of the
        present differentiable inputs, less those a :class:`SameGrad` shortcut aliases
        (``scalars`` gives the scalar inputs its condition reads)."""
        if self.backward is None:
            self._fail("training_traffic() needs a backward")
        scalars = scalars or {}
        grads = (self.output_names[0],) if grads is None else tuple(grads)
        out_bytes = {}
        for o, (kind, src, _, _) in zip(self.outputs, self.alloc_plan):
            if self.input_names[src] in nbytes:
                out_bytes[o.name] = (0 if kind in _UNCOUNTED else stat_bytes if kind is ALLOC_STAT
                                     else nbytes[self.input_names[src]])
        missing = sorted({self.input_names[k] for _, _, _, args in self.aliases for k in args}
                         - set(scalars))
        if missing:
            self._fail(f"training_traffic(): scalars= must give {missing} (a same_grad condition)")
        aliased = {t for t, _, when, args in self.aliases
                   if when(*(scalars[self.input_names[k]] for k in args))}
        bsizes, flags = {}, {}
        for inp, (source, k, extra) in zip(self.backward.inputs, self.backward_plan):
            if source is FROM_GRAD:
                if self.output_names[k] in grads and self.output_names[k] in out_bytes:
                    bsizes[inp.name] = out_bytes[self.output_names[k]]
            elif source is FROM_NEED:
                flags[inp.name] = self.input_names[k] in nbytes and k not in aliased
            elif source is FROM_SAVED:
                where, j = self.saved[k]
                name = self.input_names[j] if where == "in" else self.output_names[j]
                size = nbytes.get(name) if where == "in" else out_bytes.get(name)
                if size is not None:
                    bsizes[inp.name] = size
        return (self.traffic(nbytes, stat_bytes, training=True)
                + self.backward.traffic(bsizes, stat_bytes, training=True, flags=flags))

    def channel_flag(self, nd_index) -> str:
        """Source of a :class:`ChannelStat`'s channels_last flag: the input's name or the
        constant (its plan entry holds an input index or a bool)."""
        return repr(nd_index) if type(nd_index) is bool else self.input_names[nd_index]

    def want(self, **by_name) -> tuple:
        """:attr:`no_grad_want` with some outputs overridden by name (``None``: skip)."""
        unknown = set(by_name) - set(self._out)
        if unknown:
            self._fail(f"want(): no outputs {sorted(unknown)}")
        return tuple(by_name.get(o.name, w) for o, w in zip(self.outputs, self.no_grad_want))

    # -- running, for any array library ------------------------------------------------

    def check(self, args) -> None:
        """What must hold before outputs can be shaped (``1 <= nd <= x.dim()``); the core
        checks everything else."""
        for t_index, nd_index, t_name, nd_name in self.ndim_checks:
            t, nd = args[t_index], args[nd_index]
            if t is not None and not 1 <= nd <= len(t.shape):
                bad_ndim(t_name, len(t.shape), nd_name, nd)

    def prepare(self, lib, args) -> list:
        """The inputs as the kernel reads them (checked, laid out); ``args`` in declared order."""
        self.check(args)
        args = list(args)
        for k, nd_index, nd in self.row_inputs:
            if args[k] is not None:
                args[k] = lib.rows(args[k], nd if nd_index is None else args[nd_index])
        for k in self.contiguous_inputs:
            if args[k] is not None:
                args[k] = lib.contiguous(args[k])
        for k, prep, deps in self.custom_preps:
            if args[k] is not None:
                args[k] = prep(lib, args[k], *[args[j] for j in deps])
        return args

    def allocate(self, lib, args, want) -> list:
        """The outputs for (prepared) ``args``. ``want[i]``: ``True`` (allocate, if the op's
        rules compute it), ``None`` (not computed) or an array to write into (``out=``)."""
        outs = []
        for (kind, src, nd_index, flag), w in zip(self.alloc_plan, want):
            if w is True:
                t = args[src]
                if t is None or (flag is not None and not args[flag]):
                    w = None
                elif kind is ALLOC_CONTIGUOUS:
                    w = lib.empty_like_x(t)
                elif kind is ALLOC_STRIDED:
                    w = lib.empty_like_strided(t)
                elif kind is ALLOC_CHANNEL:
                    cl = nd_index if type(nd_index) is bool else args[nd_index]
                    w = lib.empty_stat(t, (t.shape[-1] if cl else t.shape[1],))
                elif kind is ALLOC_GROUP:
                    w = lib.empty_stat(t, (t.shape[0], args[nd_index]))
                elif kind is ALLOC_SLICE:
                    w = lib.empty_stat(t, tuple(t.shape)[nd_index[0]:nd_index[1]])
                elif kind is ALLOC_SHAPED:
                    fn, deps, stat = nd_index
                    shape = tuple(fn(*[args[j] for j in deps]))
                    w = lib.empty_stat(t, shape) if stat else lib.empty_like_x(t, shape)
                elif kind is ALLOC_GROUP_C:
                    cl = nd_index if type(nd_index) is bool else args[nd_index]
                    w = lib.empty_stat(t, (t.shape[0], t.shape[-1] if cl else t.shape[1]))
                else:
                    shape = tuple(t.shape)
                    w = lib.empty_stat(t, shape[: len(shape) - args[nd_index]])
            outs.append(w)
        return outs

    def run(self, lib, args, want, stream=0) -> list:
        """Prepares the inputs, allocates the outputs with ``lib`` (a ``normkit._arrays``
        adapter), runs the kernel; returns the outputs in declared order (``None`` for those
        not computed). The same steps as :meth:`prepare` and :meth:`allocate`, as
        straight-line code generated from the plans (Note [Generated run])."""
        return self._run(lib, args, want, stream)

    def run_plans(self, lib, args, want, stream=0) -> list:
        """:meth:`run` by interpreting the plans (the reference the generated code is tested
        against)."""
        args = self.prepare(lib, args)
        outs = self.allocate(lib, args, want)
        self.kernel(*args, *outs, stream)
        return outs

    def run_named(self, lib, inputs: dict, want: dict, stream=0) -> dict:
        """:meth:`run` by name, for callers that hold an op family's arguments under their
        own names (the functional API): ``inputs`` may hold names this op does not take
        (ignored); an output missing from ``want`` gets :attr:`no_grad_want`'s entry.
        Returns ``{output name: array or None}``."""
        args = [inputs[n] for n in self.input_names]
        w = [want.get(o.name, d) for o, d in zip(self.outputs, self.no_grad_want)]
        return dict(zip(self.output_names, self.run(lib, args, w, stream)))

    # -- schema -------------------------------------------------------------------------

    def schema(self) -> str:
        """The torch schema (without the name), e.g.
        ``(Tensor x, Tensor? weight, float eps, SymInt nd) -> (Tensor, Tensor)``. An int is a
        ``SymInt`` (as ``torch.library.infer_schema`` writes a Python int), so a traced graph
        may keep it symbolic."""
        kinds = {"int": "SymInt"}
        args = ", ".join(f"{kinds.get(i.kind, i.kind)} {i.name}" for i in self.inputs)
        if len(self.outputs) == 1:
            return f"({args}) -> Tensor"
        return f"({args}) -> ({', '.join('Tensor' for _ in self.outputs)})"

    # -- backward wiring ----------------------------------------------------------------

    def _wire_backward(self):
        bwd = self.backward
        self.differentiable_outputs = tuple(
            k for k, o in enumerate(self.outputs) if o.differentiable)
        self.non_differentiable_outputs = tuple(
            k for k, o in enumerate(self.outputs) if not o.differentiable)
        if not self.differentiable_outputs:
            self._fail("a backward needs a differentiable output")
        # Which forward input each backward output is the gradient of.
        grads = []
        covered = set()
        for j, o in enumerate(bwd.outputs):
            if o.grad_of is None:
                self._fail(f"backward output {o.name!r} must say grad_of=")
            k = self._input(o.grad_of, f"backward output {o.name!r} grad_of")
            if k not in self.differentiable_inputs:
                self._fail(f"backward output {o.name!r}: input {o.grad_of!r} is not differentiable")
            grads.append((j, k))
            covered.add(k)
        missing = [self.input_names[k] for k in self.differentiable_inputs if k not in covered]
        if missing:
            self._fail(f"no backward output is the gradient of {missing}")
        self.grad_map = tuple(grads)
        bwd_grad_of = {o.name: self._in[o.grad_of] for o in bwd.outputs}

        aliases = []
        for sg in self.same_grad:
            t = self._input(sg.target, "same_grad target", tensor=True)
            s = self._input(sg.source, "same_grad source", tensor=True)
            when_args = tuple(self._input(n, "same_grad when") for n in
                              _param_names(sg.when, f"{self.name}: same_grad when"))
            aliases.append((t, s, sg.when, when_args))
        self.aliases = tuple(aliases)
        aliased = {t: n for n, (t, _, _, _) in enumerate(aliases)}

        # Each backward input's source. Saved tensors and kept values are numbered in order
        # of first use.
        saved: List[Tuple[str, int]] = []
        kept: List[int] = []
        plan = []
        zeros_for = []
        for inp in bwd.inputs:
            n = inp.name
            if n.startswith("d") and n[1:] in self._out and self.outputs[self._out[n[1:]]].differentiable:
                if not inp.is_tensor:
                    bwd._fail(f"input {n!r} (a gradient) must be a tensor")
                k = self._out[n[1:]]
                # Autograd may have no gradient for an output (with several differentiable
                # outputs, one took no part in the loss; gradcheck tries it too): a required
                # one becomes zeros shaped like the output, an optional one stays None.
                z = None
                if inp.kind == TENSOR:
                    if k not in zeros_for:
                        zeros_for.append(k)
                    z = zeros_for.index(k)
                plan.append((FROM_GRAD, k, z))
            elif n.startswith("need_") and n[5:] in bwd_grad_of:
                if inp.kind != "bool":
                    bwd._fail(f"input {n!r} must be a bool")
                k = bwd_grad_of[n[5:]]
                plan.append((FROM_NEED, k, aliased.get(k)))
            elif n in self._in or n in self._out:
                src = ("in", self._in[n]) if n in self._in else ("out", self._out[n])
                is_tensor = src[0] == "out" or self.inputs[src[1]].is_tensor
                if is_tensor != inp.is_tensor:
                    bwd._fail(f"input {n!r}: a tensor in one op and not in the other")
                if is_tensor:
                    if src not in saved:
                        saved.append(src)
                    plan.append((FROM_SAVED, saved.index(src), None))
                else:
                    if src[1] not in kept:
                        kept.append(src[1])
                    plan.append((FROM_KEPT, kept.index(src[1]), None))
            else:
                bwd._fail(f"input {n!r} is neither d<output>, need_<gradient>, nor a name "
                          f"of forward op {self.name!r}")
        self.saved = tuple(saved)
        self.kept = tuple(kept)
        self.backward_plan = tuple(plan)
        self.zeros_for = tuple(zeros_for)
