"""normkit with PyTorch: a drop-in LayerNorm module, swapping a model's norms, autograd.

Run:  python examples/torch_quickstart.py
"""
import torch

import normkit.torch as nkt

torch.manual_seed(0)

# 1. normkit.torch.LayerNorm takes the same arguments (and state dict) as torch.nn.LayerNorm.
ours = nkt.LayerNorm(256)
theirs = torch.nn.LayerNorm(256)
with torch.no_grad():
    theirs.weight.uniform_(0.5, 1.5)
    theirs.bias.uniform_(-0.5, 0.5)
ours.load_state_dict(theirs.state_dict())

x = torch.randn(8, 16, 256, requires_grad=True)
y = ours(x)
y_ref = theirs(x)
print(f"LayerNorm forward:  max |normkit - torch| = {(y - y_ref).abs().max():.2e}")
torch.testing.assert_close(y, y_ref)

# 2. Autograd runs normkit's backward kernels: gradients for x, weight and bias.
grad = torch.randn_like(y)
dx, dw, db = torch.autograd.grad(y, (x, ours.weight, ours.bias), grad)
dx_ref, dw_ref, db_ref = torch.autograd.grad(y_ref, (x, theirs.weight, theirs.bias), grad)
print(f"LayerNorm backward: max |dx - torch dx| = {(dx - dx_ref).abs().max():.2e}")
torch.testing.assert_close(dx, dx_ref)
torch.testing.assert_close(dw, dw_ref, rtol=1e-4, atol=1e-4)
torch.testing.assert_close(db, db_ref, rtol=1e-4, atol=1e-4)

# 3. replace_norms swaps a model's torch norm layers for normkit's, in place, weights kept.
model = torch.nn.Sequential(
    torch.nn.Linear(64, 128),
    torch.nn.LayerNorm(128),
    torch.nn.GELU(),
    torch.nn.Linear(128, 64),
    torch.nn.LayerNorm(64),
)
inp = torch.randn(32, 64)
before = model(inp).detach()
nkt.replace_norms(model)
assert isinstance(model[1], nkt.LayerNorm) and isinstance(model[4], nkt.LayerNorm)
print("after replace_norms:", [f"{type(m).__module__}.{type(m).__name__}" for m in model])
after = model(inp)
torch.testing.assert_close(after, before)
after.square().mean().backward()  # trains as before
assert model[1].weight.grad is not None
print("ok")
