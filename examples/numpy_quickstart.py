"""normkit with NumPy: layer norm and RMS norm, float32 and bfloat16 (via ml_dtypes).

Run:  python examples/numpy_quickstart.py
"""
import ml_dtypes
import numpy as np

import normkit

rng = np.random.default_rng(0)
x = rng.standard_normal((4, 512), dtype=np.float32)
weight = rng.uniform(0.5, 1.5, 512).astype(np.float32)
bias = rng.uniform(-0.5, 0.5, 512).astype(np.float32)

# Layer norm over the last dim: the result is a NumPy array of x's dtype.
y = normkit.layer_norm(x, weight, bias, eps=1e-5)
mu = x.mean(-1, keepdims=True)
expected = (x - mu) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * weight + bias
print(f"layer_norm  float32:  {y.dtype}, max |normkit - numpy| = {np.abs(y - expected).max():.2e}")
assert y.dtype == np.float32 and np.allclose(y, expected, atol=1e-5)

# RMS norm: y = x / sqrt(mean(x²) + eps) * weight.
y_rms = normkit.rms_norm(x, weight, eps=1e-6)
expected_rms = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * weight
print(f"rms_norm    float32:  max |normkit - numpy| = {np.abs(y_rms - expected_rms).max():.2e}")
assert np.allclose(y_rms, expected_rms, atol=1e-5)

# bfloat16 activations are stored 16-bit and accumulated in float32; the parameters may
# stay float32 (mixed precision, as torch AMP does). The output is bfloat16 like x.
x_bf16 = x.astype(ml_dtypes.bfloat16)
y_bf16 = normkit.layer_norm(x_bf16, weight, bias)
err = np.abs(y_bf16.astype(np.float32) - expected).max()
print(f"layer_norm  bfloat16: {y_bf16.dtype}, max |normkit - float32 numpy| = {err:.2e}")
assert y_bf16.dtype == ml_dtypes.bfloat16 and err < 0.05

# Writing into an existing array instead of allocating one.
out = np.empty_like(x)
normkit.layer_norm(x, weight, bias, out=out)
assert np.array_equal(out, y)
print("ok")
