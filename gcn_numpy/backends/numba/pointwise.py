"""The pointwise loops of the Numba backend: the gate of eq. (16) and the Langevin step of
eq. (19). Each is one compiled loop without temporary arrays; memory-bound, they cost
little next to the layers' products, and run on the calling thread."""

import numpy as np
from numba import njit

__all__ = ["NO_DELTA", "gate_flat", "gate_image", "langevin"]

NO_DELTA = np.zeros((1, 1, 1, 1), dtype=bool)  # the compiled runs' delta when not gated


@njit(cache=True, nogil=True)
def gate_flat(B, delta, G):
    """``G = B * delta`` element by element (flat, contiguous arrays): a product, as in the
    reference, so that a non-finite ``B`` where ``delta`` is 0 gives NaN there too."""
    for i in range(G.size):
        G[i] = B[i] * delta[i]


@njit(cache=True, nogil=True)
def gate_image(out, delta, n):
    """Image ``n`` of the top-down output ``out`` gated in place by ``delta`` (same
    shapes, channels last): while the image is still in cache."""
    gate_flat(out[n].ravel(), delta[n].ravel(), out[n].ravel())


@njit(cache=True, nogil=True)
def langevin(I, B, Z, half_eps2, sigma2, eps, out):
    """``out = I - half_eps2 * (I / sigma2 - B) + eps * Z`` element by element; 4-d arrays
    of one shape in any memory order, looped in the order of their axes (given as
    ``(N, H, W, C)`` views where ``B`` is channels last)."""
    N, C, H, W = out.shape
    for n in range(N):
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    v = I[n, c, i, j]
                    out[n, c, i, j] = (
                        v - half_eps2 * (v / sigma2 - B[n, c, i, j]) + eps * Z[n, c, i, j]
                    )
