"""normkit for torch: custom ops (``torch.ops.normkit.*``) with fake implementations and
autograd through normkit's backward kernels, drop-in modules, and ``replace_norms``.

Importing this package imports torch; ``import normkit`` alone does not.
"""

from normkit.torch import (_ada_norm, _batch_layer_norm, _batch_norm, _dyt, _group_norm, _ops,
                           _param_norm, _rnn)
from normkit.torch._ada_norm import AdaNorm, ada_norm
from normkit.torch._batch_layer_norm import BatchLayerNorm, batch_layer_norm
from normkit.torch._batch_norm import (BatchNorm1d, BatchNorm2d, BatchNorm3d, SyncBatchNorm,
                                       batch_norm)
from normkit.torch._dyt import DyT, dyt, layer_norm_to_dyt
from normkit.torch._group_norm import (GroupNorm, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d,
                                       group_norm, instance_norm)
from normkit.torch._ops import add_layer_norm, add_rms_norm, layer_norm, rms_norm
from normkit.torch.modules import LayerNorm, RMSNorm, replace_norms
from normkit.torch._param_norm import SpectralNorm, WeightNorm, spectral_norm, weight_norm
from normkit.torch._distributed import all_gather_moments
from normkit.torch._rnn import (LayerNormGRU, LayerNormGRUCell, LayerNormLSTM, LayerNormLSTMCell,
                                LayerNormRNN, LayerNormRNNCell)

__all__ = [
    "LayerNorm",
    "RMSNorm",
    "replace_norms",
    "layer_norm",
    "rms_norm",
    "add_layer_norm",
    "add_rms_norm",
    "DyT",
    "dyt",
    "layer_norm_to_dyt",
    "AdaNorm",
    "ada_norm",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "SyncBatchNorm",
    "batch_norm",
    "GroupNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "group_norm",
    "instance_norm",
    "BatchLayerNorm",
    "batch_layer_norm",
    "LayerNormLSTM",
    "LayerNormGRU",
    "LayerNormRNN",
    "LayerNormLSTMCell",
    "LayerNormGRUCell",
    "LayerNormRNNCell",
    "weight_norm",
    "WeightNorm",
    "spectral_norm",
    "SpectralNorm",
    "all_gather_moments",
]
