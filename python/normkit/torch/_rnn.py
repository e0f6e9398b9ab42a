"""The layer-normalized recurrent networks (SPEC §12) in torch: ``torch.ops.normkit.
{lstm,gru,rnn}_seq_fwd`` / ``_bwd`` (declared once in ``normkit._rnn``; autograd through
normkit's BPTT kernels), the modules ``LayerNormLSTM``, ``LayerNormGRU``, ``LayerNormRNN``
(``torch.nn.LSTM``'s arguments, its parameter names, ``from_torch``) and the cells
``LayerNormLSTMCell``, ``LayerNormGRUCell``, ``LayerNormRNNCell``."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from normkit import _rnn as decl
from normkit.torch._registry import register

__all__ = ["LayerNormLSTM", "LayerNormGRU", "LayerNormRNN", "LayerNormLSTMCell",
           "LayerNormGRUCell", "LayerNormRNNCell", "TORCH_OPS"]

TORCH_OPS = {"lstm": register(decl.LSTM), "gru": register(decl.GRU), "rnn": register(decl.RNN)}

_LN = {"lstm": ("ln_x", "ln_h", "ln_c"), "gru": ("ln_x", "ln_h"), "rnn": ("ln_x",)}
_TORCH_MODULE = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
_TORCH_CELL = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}


def _ln_width(family: str, part: str, H: int) -> int:
    if part == "ln_c" or family == "rnn":
        return H
    return decl.GATES[family] * H


def _check_common(input_size, hidden_size, zoneout, eps, nonlinearity=None):
    for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if not (isinstance(zoneout, (int, float)) and 0.0 <= zoneout <= 1.0):
        raise ValueError(f"zoneout: expected a probability in [0, 1], got {zoneout!r}")
    if not (isinstance(eps, (int, float)) and eps >= 0.0 and math.isfinite(eps)):
        raise ValueError(f"eps: expected a finite value >= 0, got {eps!r}")
    if nonlinearity is not None and nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")


class _Base(torch.nn.Module):
    _family = "lstm"

    def _make_params(self, suffix: str, in_size: int, factory):
        H, G = self.hidden_size, decl.GATES[self._family]
        P = torch.nn.Parameter
        setattr(self, f"weight_ih{suffix}", P(torch.empty(G * H, in_size, **factory)))
        setattr(self, f"weight_hh{suffix}", P(torch.empty(G * H, H, **factory)))
        if self.bias:
            setattr(self, f"bias_ih{suffix}", P(torch.empty(G * H, **factory)))
            setattr(self, f"bias_hh{suffix}", P(torch.empty(G * H, **factory)))
        else:
            self.register_parameter(f"bias_ih{suffix}", None)
            self.register_parameter(f"bias_hh{suffix}", None)
        for part in _LN[self._family]:
            n = _ln_width(self._family, part, H)
            setattr(self, f"{part}_weight{suffix}", P(torch.ones(n, **factory)))
            setattr(self, f"{part}_bias{suffix}", P(torch.zeros(n, **factory)))

    def _reset(self, suffixes):
        """torch.nn.LSTM's initialization (U(−1/√H, 1/√H) for weights and biases); LN gains
        1 and shifts 0."""
        std = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for s in suffixes:
                for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    p = getattr(self, n + s)
                    if p is not None:
                        p.uniform_(-std, std)
                for part in _LN[self._family]:
                    getattr(self, f"{part}_weight{s}").fill_(1.0)
                    getattr(self, f"{part}_bias{s}").zero_()

    def _ln_of(self, s: str):
        out = {}
        for part in _LN[self._family]:
            out[f"{part}_weight"] = getattr(self, f"{part}_weight{s}")
            out[f"{part}_bias"] = getattr(self, f"{part}_bias{s}")
        return out

    def _run(self, x, suffix, h0, c0, reverse, masks, batch_first, zoneout_const):
        """One layer, one direction, through the declared op."""
        f = self._family
        ln = self._ln_of(suffix)
        args = [x, h0] + ([c0] if f == "lstm" else []) + [
            getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix),
            getattr(self, "bias_ih" + suffix), getattr(self, "bias_hh" + suffix)]
        args += [ln[f"{p}_{w}"] for p in _LN[f] for w in ("weight", "bias")]
        args += [masks[0]] + ([masks[1]] if f == "lstm" else [])
        args += [batch_first, getattr(self, "per_gate", False), float(self.eps), reverse]
        if f == "rnn":
            args.append(self.nonlinearity == "relu")
        args += [zoneout_const] * (2 if f == "lstm" else 1)
        outs = TORCH_OPS[f](*args)
        return outs[0], outs[1], (outs[2] if f == "lstm" else None)


class _LayerNormRNNBase(_Base):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 per_gate: bool = False, eps: float = 1e-5, zoneout: float = 0.0,
                 nonlinearity: Optional[str] = None, device=None, dtype=None):
        super().__init__()
        _check_common(input_size, hidden_size, zoneout, eps, nonlinearity)
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
            raise ValueError(f"num_layers: expected an int >= 1, got {num_layers!r}")
        if not (isinstance(dropout, (int, float)) and not isinstance(dropout, bool)
                and 0.0 <= dropout <= 1.0):
            raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout!r}")
        if self._family == "rnn" and per_gate:
            raise ValueError("per_gate: the Elman RNN has one gate (LN over W_ih·x + W_hh·h + b)")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional, self.per_gate = bool(bidirectional), bool(per_gate)
        self.eps, self.zoneout = float(eps), float(zoneout)
        if nonlinearity is not None:
            self.nonlinearity = nonlinearity
        factory = {"device": device, "dtype": dtype}
        self._suffixes = []
        D = 2 if bidirectional else 1
        for layer in range(num_layers):
            for d in range(D):
                s = f"_l{layer}" + ("_reverse" if d else "")
                self._make_params(s, input_size if layer == 0 else hidden_size * D, factory)
                self._suffixes.append(s)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._reset(self._suffixes)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        if self.per_gate:
            s += ", per_gate=True"
        if self.zoneout:
            s += f", zoneout={self.zoneout}"
        return s

    @classmethod
    def from_torch(cls, module: torch.nn.Module, **kw):
        """A normkit module with ``module``'s (a trained ``torch.nn.LSTM`` / ``GRU`` / ``RNN``)
        configuration and weights, LN gains 1 and shifts 0; ``kw`` (per_gate, eps, zoneout)
        are normkit's own options. The result is *not* the same function as ``module``: it
        normalizes the pre-activations."""
        want = _TORCH_MODULE[cls._family]
        if not isinstance(module, want):
            raise TypeError(f"module: expected a torch.nn.{want.__name__}, got "
                            f"{type(module).__name__}")
        if getattr(module, "proj_size", 0):
            raise ValueError("module: LSTMs with proj_size > 0 are not supported")
        extra = {"nonlinearity": module.nonlinearity} if cls._family == "rnn" else {}
        p = next(module.parameters())
        new = cls(module.input_size, module.hidden_size, num_layers=module.num_layers,
                  bias=module.bias, batch_first=module.batch_first, dropout=module.dropout,
                  bidirectional=module.bidirectional, device=p.device, dtype=p.dtype, **extra,
                  **kw)
        with torch.no_grad():
            for name, t in module.named_parameters():
                getattr(new, name).copy_(t)
        new.train(module.training)
        return new

    def _check_input(self, x: Tensor):
        if x.dim() not in (2, 3):
            raise ValueError(f"input: expected 2 (unbatched) or 3 dims, got shape "
                             f"{tuple(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input: expected input_size {self.input_size} in the last dim, got "
                             f"shape {tuple(x.shape)}")

    def _states(self, hx, B, x, batched):
        """(h0, c0) of shape (num_layers·D, B, H) each, or Nones."""
        D = 2 if self.bidirectional else 1
        want = (self.num_layers * D, B, self.hidden_size)
        if hx is None:
            return None, None
        if self._family == "lstm":
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError("hx: expected a tuple (h_0, c_0) for an LSTM")
            h0, c0 = hx
        else:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"hx: expected a tensor for {type(self).__name__}, got a tuple")
            h0, c0 = hx, None
        out = []
        for name, t in (("h_0", h0), ("c_0", c0)):
            if t is None:
                out.append(None)
                continue
            if not batched:
                if t.dim() != 2:
                    raise ValueError(f"hx: {name} must be 2-D for unbatched input, got shape "
                                     f"{tuple(t.shape)}")
                t = t.unsqueeze(1)
            if tuple(t.shape) != want:
                raise ValueError(f"hx: expected {name} of shape {want}, got {tuple(t.shape)}")
            if t.dtype != x.dtype:
                raise TypeError(f"hx: expected {name} of dtype {x.dtype} (the input's), got "
                                f"{t.dtype}")
            out.append(t)
        return out[0], out[1]

    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            padded, lengths = pad_packed_sequence(input, batch_first=self.batch_first)
            x, batched = padded, True
        else:
            if not isinstance(input, Tensor):
                raise TypeError(f"input: expected a Tensor or a PackedSequence, got "
                                f"{type(input).__name__}")
            x = input
            self._check_input(x)
            batched = x.dim() == 3
            if not batched:
                x = x.unsqueeze(1 if not self.batch_first else 0)
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input: expected input_size {self.input_size}, got shape "
                             f"{tuple(x.shape)}")
        bf = self.batch_first
        T, B = (x.shape[1], x.shape[0]) if bf else (x.shape[0], x.shape[1])
        h0, c0 = self._states(hx, B, x, batched)
        D = 2 if self.bidirectional else 1
        H = self.hidden_size
        zo = self.zoneout
        train_zo = self.training and zo > 0.0
        keep = None  # packed: padded steps keep the state (a zoneout mask of 1)
        if lengths is not None:
            t_idx = torch.arange(T, device=x.device)
            valid = t_idx[:, None] < lengths.to(x.device)[None, :]  # (T, B)
            if bf:
                valid = valid.t()
            keep = valid
        mshape = (B, T, H) if bf else (T, B, H)

        def masks():
            if not train_zo and keep is None:
                return None, None, (0.0 if self.training else zo)
            out = []
            for _ in range(2 if self._family == "lstm" else 1):
                if train_zo:
                    m = (torch.rand(mshape, device=x.device) < zo).to(x.dtype)
                else:
                    m = torch.full(mshape, 0.0 if self.training else zo, dtype=x.dtype,
                                   device=x.device)
                if keep is not None:
                    m = torch.where(keep[..., None], m, torch.ones((), dtype=x.dtype,
                                                                   device=x.device))
                out.append(m)
            return out[0], (out[1] if len(out) > 1 else None), 0.0

        hs, cs = [], []
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(D):
                k = layer * D + d
                s = f"_l{layer}" + ("_reverse" if d else "")
                mh, mc, const = masks()
                y, hn, cn = self._run(layer_in, s, None if h0 is None else h0[k],
                                      None if c0 is None else c0[k], bool(d), (mh, mc), bf,
                                      const)
                outs.append(y)
                hs.append(hn)
                cs.append(cn)
            layer_in = outs[0] if D == 1 else torch.cat(outs, dim=-1)
            if self.dropout and self.training and layer + 1 < self.num_layers:
                layer_in = torch.nn.functional.dropout(layer_in, self.dropout, True)
        out = layer_in
        h_n = torch.stack(hs)
        c_n = torch.stack(cs) if self._family == "lstm" else None
        if packed:
            out = out * keep[..., None].to(out.dtype)
            sorted_idx = input.sorted_indices
            seq = out if not bf else out.transpose(0, 1)
            lens = lengths
            if sorted_idx is not None:
                seq = seq.index_select(1, sorted_idx.to(seq.device))
                lens = lengths.index_select(0, sorted_idx.cpu())
            data = pack_padded_sequence(seq, lens, enforce_sorted=True).data
            out = PackedSequence(data, input.batch_sizes, input.sorted_indices,
                                 input.unsorted_indices)
        elif not batched:
            out = out.squeeze(1 if not bf else 0)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        return out, ((h_n, c_n) if self._family == "lstm" else h_n)


class LayerNormLSTM(_LayerNormRNNBase):
    """A multi-layer layer-normalized LSTM (Ba et al. 2016; SPEC §12), a drop-in for
    ``torch.nn.LSTM``: the same constructor arguments, input and ``hx`` layouts, outputs and
    parameter names (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``,
    ``…_reverse``), plus the LN parameters ``ln_x_weight_l0`` / ``ln_x_bias_l0`` (4H, over the
    input projection), ``ln_h_weight_l0`` / ``ln_h_bias_l0`` (4H, over the recurrent one) and
    ``ln_c_weight_l0`` / ``ln_c_bias_l0`` (H, the cell state on the output path):
    ``a = LN_h(W_hh·h) + LN_x(W_ih·x) + b_ih + b_hh``, ``c' = f·c + i·g``,
    ``h' = o·tanh(LN_c(c'))``. ``per_gate=True`` normalizes each gate separately;
    ``zoneout`` (Krueger et al. 2016) keeps each unit of h and c with that probability in
    training and uses the expectation in eval. PackedSequence input is accepted (its padded
    steps keep the state). ``from_torch(lstm)`` builds one from a trained ``nn.LSTM``.
    Autograd runs normkit's BPTT kernels; ``torch.compile(fullgraph=True)`` traces it."""
    _family = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, per_gate=False, eps=1e-5, zoneout=0.0,
                 device=None, dtype=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, per_gate, eps, zoneout, None, device, dtype)


class LayerNormGRU(_LayerNormRNNBase):
    """A multi-layer layer-normalized GRU (SPEC §12), a drop-in for ``torch.nn.GRU``:
    ``gx = LN_x(W_ih·x) + b_ih``, ``gh = LN_h(W_hh·h) + b_hh`` (3H each), ``r = σ(gx_r +
    gh_r)``, ``z = σ(gx_z + gh_z)``, ``n = tanh(gx_n + r·gh_n)``, ``h' = (1 − z)·n + z·h``.
    LN parameters ``ln_x_*_l0``, ``ln_h_*_l0``; otherwise as :class:`LayerNormLSTM`."""
    _family = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, per_gate=False, eps=1e-5, zoneout=0.0,
                 device=None, dtype=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, per_gate, eps, zoneout, None, device, dtype)


class LayerNormRNN(_LayerNormRNNBase):
    """A multi-layer layer-normalized Elman RNN (SPEC §12), a drop-in for ``torch.nn.RNN``:
    ``h' = act(LN(W_ih·x + W_hh·h + b_ih + b_hh))``, act = ``nonlinearity`` ('tanh' or
    'relu'); LN parameters ``ln_x_weight_l0``, ``ln_x_bias_l0`` (H). Otherwise as
    :class:`LayerNormLSTM` (no ``per_gate``: one gate)."""
    _family = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, eps=1e-5, zoneout=0.0,
                 device=None, dtype=None):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, False, eps, zoneout, nonlinearity, device, dtype)


# ---------------------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------------------


class _CellBase(_Base):
    def __init__(self, input_size, hidden_size, bias=True, per_gate=False, eps=1e-5,
                 zoneout=0.0, nonlinearity=None, device=None, dtype=None):
        super().__init__()
        _check_common(input_size, hidden_size, zoneout, eps, nonlinearity)
        if self._family == "rnn" and per_gate:
            raise ValueError("per_gate: the Elman RNN has one gate")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bool(bias)
        self.per_gate, self.eps, self.zoneout = bool(per_gate), float(eps), float(zoneout)
        if nonlinearity is not None:
            self.nonlinearity = nonlinearity
        self._make_params("", input_size, {"device": device, "dtype": dtype})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._reset([""])

    @classmethod
    def from_torch(cls, cell: torch.nn.Module, **kw):
        """From a trained ``torch.nn.LSTMCell`` / ``GRUCell`` / ``RNNCell``: its weights, LN
        gains 1 and shifts 0."""
        want = _TORCH_CELL[cls._family]
        if not isinstance(cell, want):
            raise TypeError(f"cell: expected a torch.nn.{want.__name__}, got {type(cell).__name__}")
        extra = {"nonlinearity": cell.nonlinearity} if cls._family == "rnn" else {}
        p = next(cell.parameters())
        new = cls(cell.input_size, cell.hidden_size, bias=cell.bias, device=p.device,
                  dtype=p.dtype, **extra, **kw)
        with torch.no_grad():
            for name, t in cell.named_parameters():
                getattr(new, name).copy_(t)
        return new

    def forward(self, input: Tensor, hx=None):
        if not isinstance(input, Tensor):
            raise TypeError(f"input: expected a Tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"input: expected shape (batch, {self.input_size}) or "
                             f"({self.input_size},), got {tuple(input.shape)}")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        B, H = x.shape[0], self.hidden_size
        lstm = self._family == "lstm"
        if hx is None:
            h, c = None, None
        elif lstm:
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError("hx: expected a tuple (h, c) for an LSTM cell")
            h, c = hx
        else:
            h, c = hx, None
        states = []
        for name, t in (("h", h), ("c", c)):
            if t is not None:
                t = t if batched else t.unsqueeze(0)
                if tuple(t.shape) != (B, H):
                    raise ValueError(f"hx: expected {name} of shape {(B, H)}, got "
                                     f"{tuple(t.shape)}")
            states.append(t)
        zo = self.zoneout
        masks, const = (None, None), (0.0 if self.training else zo)
        if self.training and zo > 0.0:
            n = 2 if lstm else 1
            ms = [(torch.rand((1, B, H), device=x.device) < zo).to(x.dtype) for _ in range(n)]
            masks, const = (ms[0], ms[1] if lstm else None), 0.0
        _, hn, cn = self._run(x.unsqueeze(0), "", states[0], states[1], False, masks, False,
                              const)
        if not batched:
            hn = hn.squeeze(0)
            cn = cn.squeeze(0) if cn is not None else None
        return (hn, cn) if lstm else hn


class LayerNormLSTMCell(_CellBase):
    """One LN-LSTM step (``torch.nn.LSTMCell``'s arguments and parameter names ``weight_ih``,
    ``weight_hh``, ``bias_ih``, ``bias_hh``, plus ``ln_x_*``, ``ln_h_*``, ``ln_c_*``):
    ``forward(input, (h, c)) -> (h', c')``. See :class:`LayerNormLSTM`."""
    _family = "lstm"

    def __init__(self, input_size, hidden_size, bias=True, per_gate=False, eps=1e-5,
                 zoneout=0.0, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, per_gate, eps, zoneout, None, device,
                         dtype)


class LayerNormGRUCell(_CellBase):
    """One LN-GRU step (``torch.nn.GRUCell``'s arguments): ``forward(input, h) -> h'``."""
    _family = "gru"

    def __init__(self, input_size, hidden_size, bias=True, per_gate=False, eps=1e-5,
                 zoneout=0.0, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, per_gate, eps, zoneout, None, device,
                         dtype)


class LayerNormRNNCell(_CellBase):
    """One LN-Elman step (``torch.nn.RNNCell``'s arguments, ``nonlinearity`` 'tanh' or
    'relu'): ``forward(input, h) -> h'``."""
    _family = "rnn"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", eps=1e-5,
                 zoneout=0.0, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, False, eps, zoneout, nonlinearity,
                         device, dtype)
