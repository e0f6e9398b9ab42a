"""Group norm and instance norm (SPEC §5), declared once each (normkit._registry); instance
norm is the group-norm kernels with one group per channel, plus optional running statistics.

Every function takes NumPy arrays, torch tensors or any DLPack array and returns the same
kind. Channels first ``(N, C, *)`` (``axis=1``, the default) or channels last ``(N, *, C)``
(``axis=-1``) are used in place; a torch tensor in ``channels_last`` / ``channels_last_3d``
memory format is computed in place with ``axis=1`` and the output keeps its memory format
(torch 2.13's CPU group norm returns such inputs' outputs contiguous; its instance norm
copies them). Any other strided view is copied once.
"""

from __future__ import annotations

from . import _core
from ._arrays import BackwardOut, detach, is_torch, lib_for, misaligned_numpy, refuse_out_with_grad
from ._batch_norm import (_dy, _in_place_ok, _needs_autograd, _x, batch_norm, channels_last_of,
                          start_running, update_factor)
from ._registry import Bool, Float, GroupStat, Int, Like, Op, OptionalTensor, Out, Tensor

__all__ = [
    "group_norm", "group_norm_forward", "group_norm_backward", "instance_norm",
    "GROUP_NORM", "GROUP_NORM_BWD", "INSTANCE_NORM", "INSTANCE_NORM_BWD",
]


def _channels(x, channels_last) -> int:
    return x.shape[-1] if channels_last or len(x.shape) == 2 else x.shape[1]


# ---------------------------------------------------------------------------------------
# The declarations
# ---------------------------------------------------------------------------------------

GROUP_NORM_BWD = Op(
    "group_norm_bwd",
    inputs=[Tensor("dy", prep=_dy), Tensor("x", prep=_x), Tensor("save_mean"),
            Tensor("save_rstd"), OptionalTensor("weight", contiguous=True),
            OptionalTensor("bias", shape_only=True), Int("num_groups"), Bool("channels_last"),
            Bool("need_dx"), Bool("need_dweight"), Bool("need_dbias")],
    outputs=[Out("dx", Like("x", strides="preserve"), grad_of="x"),
             Out("dweight", Like("weight"), grad_of="weight"),
             Out("dbias", Like("bias"), grad_of="bias")],
    kernel=lambda dy, x, save_mean, save_rstd, weight, bias, num_groups, channels_last, need_dx,
    need_dweight, need_dbias, dx, dweight, dbias, stream: _core.group_norm_backward(
        dy, x, save_mean, save_rstd, weight, dx, dweight, dbias, num_groups, channels_last,
        stream),
)

GROUP_NORM = Op(
    "group_norm_fwd",
    inputs=[Tensor("x", differentiable=True, prep=_x),
            OptionalTensor("weight", differentiable=True, contiguous=True),
            OptionalTensor("bias", differentiable=True, contiguous=True),
            Int("num_groups"), Float("eps"), Bool("channels_last")],
    outputs=[Out("y", Like("x", strides="preserve")),
             Out("save_mean", GroupStat("x", "num_groups"), differentiable=False,
                 backward_only=True),
             Out("save_rstd", GroupStat("x", "num_groups"), differentiable=False,
                 backward_only=True)],
    kernel=lambda x, weight, bias, num_groups, eps, channels_last, y, save_mean, save_rstd,
    stream: _core.group_norm_forward(x, weight, bias, y, save_mean, save_rstd, None, None,
                                     num_groups, eps, 0.1, channels_last, stream),
    backward=GROUP_NORM_BWD,
    doc="Group norm (SPEC §5); returns y and the saved mean and rstd [N, num_groups].",
)


def _instance_forward_kernel(x, weight, bias, running_mean, running_var, momentum, eps,
                             channels_last, y, save_mean, save_rstd, new_running_mean,
                             new_running_var, stream):
    start_running(new_running_mean, running_mean)
    start_running(new_running_var, running_var)
    _core.group_norm_forward(x, weight, bias, y, save_mean, save_rstd, new_running_mean,
                             new_running_var, _channels(x, channels_last), eps, momentum,
                             channels_last, stream)


INSTANCE_NORM_BWD = Op(
    "instance_norm_bwd",
    inputs=[Tensor("dy", prep=_dy), Tensor("x", prep=_x), Tensor("save_mean"),
            Tensor("save_rstd"), OptionalTensor("weight", contiguous=True),
            OptionalTensor("bias", shape_only=True), Bool("channels_last"),
            Bool("need_dx"), Bool("need_dweight"), Bool("need_dbias")],
    outputs=[Out("dx", Like("x", strides="preserve"), grad_of="x"),
             Out("dweight", Like("weight"), grad_of="weight"),
             Out("dbias", Like("bias"), grad_of="bias")],
    kernel=lambda dy, x, save_mean, save_rstd, weight, bias, channels_last, need_dx,
    need_dweight, need_dbias, dx, dweight, dbias, stream: _core.group_norm_backward(
        dy, x, save_mean, save_rstd, weight, dx, dweight, dbias, _channels(x, channels_last),
        channels_last, stream),
)

INSTANCE_NORM = Op(
    "instance_norm_fwd",
    inputs=[Tensor("x", differentiable=True, prep=_x),
            OptionalTensor("weight", differentiable=True, contiguous=True),
            OptionalTensor("bias", differentiable=True, contiguous=True),
            OptionalTensor("running_mean", contiguous=True),
            OptionalTensor("running_var", contiguous=True),
            Float("momentum"), Float("eps"), Bool("channels_last")],
    outputs=[Out("y", Like("x", strides="preserve")),
             Out("save_mean", GroupStat("x", channels_last="channels_last"),
                 differentiable=False, backward_only=True),
             Out("save_rstd", GroupStat("x", channels_last="channels_last"),
                 differentiable=False, backward_only=True),
             Out("new_running_mean", Like("running_mean"), differentiable=False),
             Out("new_running_var", Like("running_var"), differentiable=False)],
    kernel=_instance_forward_kernel,
    backward=INSTANCE_NORM_BWD,
    doc="Instance norm with the statistics of each instance (SPEC §5); returns y, the saved "
        "mean and rstd [N, C], and the running statistics after this call.",
)


# ---------------------------------------------------------------------------------------
# The functional API
# ---------------------------------------------------------------------------------------


def _groups(num_groups) -> int:
    if isinstance(num_groups, bool) or not hasattr(num_groups, "__index__"):
        raise TypeError(f"num_groups: expected an int, got {type(num_groups).__name__}")
    return num_groups.__index__()


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, axis=1, out=None):
    """Group normalization (Wu & He 2018), torch's ``F.group_norm`` argument order: per
    sample, statistics over each group of ``C/num_groups`` channels and every spatial
    position; ``weight``, ``bias`` per channel. ``axis``: 1 for ``(N, C, *)``, -1 for
    ``(N, *, C)``. Returns ``y``, or writes ``out``."""
    cl = channels_last_of(x, axis)
    G = _groups(num_groups)
    if is_torch(x):
        if out is None and _needs_autograd(x, weight, bias):
            from .torch import _group_norm

            return _group_norm.group_norm(x, G, weight, bias, eps, cl)
        if out is not None:
            refuse_out_with_grad("group_norm", (x, weight, bias), (out,))
    lib = lib_for(x)
    into = out if misaligned_numpy(out) else None
    want = [True if out is None or into is not None else out, None, None]
    args = [detach(x), detach(weight), detach(bias), G, float(eps), cl]
    y = GROUP_NORM.run(lib, args, want, lib.stream)[0]
    if into is not None:
        into[...] = y
        return into
    return lib.finish(y) if out is None else y


def group_norm_forward(x, num_groups, weight=None, bias=None, eps=1e-5, *, axis=1, out=None):
    """Group norm for users who drive their own autograd: ``(y, save_mean, save_rstd)``,
    the statistics ``[N, num_groups]`` that :func:`group_norm_backward` needs; ``out``: y's
    buffer."""
    cl = channels_last_of(x, axis)
    lib = lib_for(x)
    args = [detach(x), detach(weight), detach(bias), _groups(num_groups), float(eps), cl]
    f = lib.finish
    res = GROUP_NORM.run(lib, args, (True if out is None else out, True, True), lib.stream)
    return tuple(a if a is out else f(a) for a in res)


_GRADS = ("dx", "dweight", "dbias")


def group_norm_backward(dy, x, save_mean, save_rstd, num_groups, weight=None, bias=None, *,
                        axis=1, out=None):
    """Gradients of :func:`group_norm`: ``(dx, dweight, dbias)``, ``None`` for an absent
    parameter (``bias`` only says whether ``dbias`` is wanted); ``out``: dx's buffer, or a
    tuple of buffers (or ``None`` entries) for ``(dx, dweight, dbias)``.
    ``dweight`` and ``dbias`` are reduced over the batch in a fixed order (the same bits for
    any thread count)."""
    bo = BackwardOut("group_norm_backward", out, _GRADS, (dy, x, weight))
    cl = channels_last_of(x, axis)
    lib = lib_for(x)
    args = [detach(a) for a in (dy, x, save_mean, save_rstd, weight, bias)] + [
        _groups(num_groups), cl, True, True, True]
    res = GROUP_NORM_BWD.run(lib, args, tuple(bo.want(n) for n in _GRADS), lib.stream)
    return tuple(bo.finish(lib, n, g) for n, g in zip(_GRADS, res))


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5, *, axis=1, out=None):
    """Instance normalization (Ulyanov et al. 2016), torch's ``F.instance_norm`` argument
    order: group norm with one group per channel. ``use_input_stats=True``: each instance's
    own statistics (more than one spatial element needed), and ``running_mean`` /
    ``running_var``, if given, updated in place with their batch average (unbiased
    variance), as torch's ``InstanceNorm*d(track_running_stats=True)`` does in training.
    ``use_input_stats=False``: normalizes with the running statistics (batch norm's
    evaluation). Channels-last data is computed in place, without the copy torch makes."""
    cl = channels_last_of(x, axis)
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError("running_mean: required (with running_var) when "
                             "use_input_stats=False")
        return batch_norm(x, running_mean, running_var, weight, bias, False, momentum, eps,
                          axis=axis, out=out)
    nd = len(x.shape)
    spatial = 1
    for i, s in enumerate(x.shape):
        if i != 0 and i != (nd - 1 if cl or nd == 2 else 1):
            spatial *= int(s)
    if spatial <= 1 and all(int(s) > 0 for s in x.shape):
        raise ValueError(f"x: instance norm with use_input_stats needs more than one spatial "
                         f"element per channel, got shape {tuple(x.shape)}")
    if momentum is None:
        raise ValueError("momentum: expected a float (instance norm has no cumulative "
                         "average), got None")
    factor = update_factor(momentum, True)
    if is_torch(x):
        if out is None and _needs_autograd(x, weight, bias):
            from .torch import _group_norm

            return _group_norm.instance_norm(x, running_mean, running_var, weight, bias,
                                             factor, eps, cl)
        if out is not None:
            refuse_out_with_grad("instance_norm", (x, weight, bias), (out,))
    lib = lib_for(x)
    into = out if misaligned_numpy(out) else None
    update = running_mean is not None or running_var is not None  # (one alone: the core names it)
    in_place = (running_mean is not None and running_var is not None
                and _in_place_ok(running_mean) and _in_place_ok(running_var))
    want = [True if out is None or into is not None else out, None, None,
            (running_mean if in_place else True) if update else None,
            (running_var if in_place else True) if update else None]
    args = [detach(a) for a in (x, weight, bias, running_mean, running_var)] + [
        factor, float(eps), cl]
    y, _, _, rm, rv = INSTANCE_NORM.run(lib, args, want, lib.stream)
    if update and not in_place:
        running_mean[...] = rm
        running_var[...] = rv
    if into is not None:
        into[...] = y
        return into
    return lib.finish(y) if out is None else y
