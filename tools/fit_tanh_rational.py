"""How vec_math.hpp's tanh_fast coefficients were fitted (a development tool, not part of
the package; needs numpy, scipy and mpmath, none of which normkit depends on).

tanh(a)/a = P(t)/Q(t), t = a², on a ∈ [0, C] with C = 9.02 (past it float tanh rounds to 1),
P and Q of degree 4 in t, Q(0) = 1: the minimax fit in *relative* error by differential
correction (Cheney–Loeb): repeat "minimise δ subject to |P − f·Q| ≤ δ·f·Q_prev on a dense
grid" as a linear programme until the achieved error meets the LP's δ. The grid is dense near both ends
(sin² spacing) and the constraints are scaled so the LP solver's tolerance is far below δ.
The variable is s = t/C² ∈ [0, 1] while fitting (conditioning), converted to t at the end.

    python tools/fit_tanh_rational.py            # prints the float coefficients, the fit error

The evaluation error in float (Horner, the division) adds to the fit error: the bound in
vec_math.hpp is measured over every float by cpp/tests/test_vec_math.cpp.
"""

import mpmath as mp
import numpy as np
from scipy.optimize import linprog

M, K, C = 4, 4, 9.02

mp.mp.dps = 40
a = np.unique(np.concatenate([np.linspace(0, C, 6000), C * np.sin(np.linspace(0, np.pi / 2, 3000)) ** 2]))
a[0] = 1e-6
f = np.array([float(mp.tanh(mp.mpf(x)) / mp.mpf(x)) for x in a])
s = a * a / (C * C)
Ps = np.vander(s, M + 1, increasing=True)
Qs = np.vander(s, K + 1, increasing=True)[:, 1:]
q_prev = np.ones_like(s)
for it in range(30):
    w = 1e7 / (f * q_prev)  # constraint scaling: δ·1e7 is the LP variable
    ones = np.ones((len(s), 1))
    A = np.vstack([np.hstack([w[:, None] * Ps, -(w * f)[:, None] * Qs, -ones]),
                   np.hstack([-w[:, None] * Ps, (w * f)[:, None] * Qs, -ones])])
    b = np.concatenate([w * f, -w * f])
    cost = np.zeros(M + K + 2)
    cost[-1] = 1.0
    r = linprog(cost, A_ub=A, b_ub=b, bounds=[(None, None)] * (M + K + 1) + [(0, None)],
                method="highs")
    p, q = r.x[: M + 1], np.concatenate([[1.0], r.x[M + 1 : M + K + 1]])
    Q = np.vander(s, K + 1, increasing=True) @ q
    err = np.abs((Ps @ p / Q - f) / f).max()
    q_prev = Q
    delta = r.x[-1] / 1e7  # the LP's bound, against the achieved error
    if it > 3 and abs(err - delta) < 1e-3 * delta:
        break
print(f"fit error (relative) {err:.3e} = 2^{np.log2(err):.1f}")
for name, c in (("P", p), ("Q", q)):
    coeffs = [float(np.float32(v / C ** (2 * j))) for j, v in enumerate(c)]
    print(name, ", ".join(f"{v.hex()}" for v in coeffs))
