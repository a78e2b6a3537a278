"""The PyTorch peer of the benchmarks: the same texture net with conv2d + ReLU, ``f`` the
sum of the top maps, ``B`` and the weight gradients by autograd (what a user would write
instead of gcn_numpy)."""


class TorchNet:
    """``weights`` from ``GenerativeConvNet.weights``; tensors of ``dtype`` on ``device``."""

    def __init__(self, torch, weights, layers, eps, sigma, dtype=None, device="cpu"):
        self.torch, self.F = torch, torch.nn.functional
        self.layers, self.eps, self.sigma, self.device = layers, eps, sigma, device
        self.frozen = [
            tuple(torch.tensor(a, dtype=dtype, device=device) for a in pair) for pair in weights
        ]
        self.leaves = [p.detach().requires_grad_(True) for pair in self.frozen for p in pair]

    def score(self, x, params):
        h = x
        for layer, (W, b) in zip(self.layers, params, strict=True):
            h = self.F.relu(self.F.conv2d(h, W, b, stride=layer.stride, padding=layer.padding))
        return h.sum()

    def B(self, x):
        x = x.detach().requires_grad_(True)
        return self.torch.autograd.grad(self.score(x, self.frozen), x)[0]

    def grads(self, x):
        """Gradient of the batch's summed score in the weights (as ``forward_backward``)."""
        pairs = list(zip(self.leaves[::2], self.leaves[1::2], strict=True))
        return self.torch.autograd.grad(self.score(x, pairs), self.leaves)

    def iteration(self, obs, chains, gen, steps):
        """``steps`` Langevin steps (eq. 19) on the chains, then both gradients."""
        eps, sigma = self.eps, self.sigma
        for _ in range(steps):
            B = self.B(chains)
            Z = self.torch.randn(
                chains.shape, generator=gen, device=self.device, dtype=chains.dtype
            )
            chains = chains - (0.5 * eps**2) * (chains / sigma**2 - B) + eps * Z
        return chains, self.grads(obs), self.grads(chains)
