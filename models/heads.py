"""Small MLP heads: the static colour head and the all-frames time heads."""
from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, n_hidden: int = 2) -> nn.Sequential:
    """Linear(in, hidden) -> ReLU -> ... -> Linear(hidden, out); Xavier weights, zero biases."""
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(n_hidden):
        layers += [nn.Linear(dim, hidden), nn.ReLU(inplace=True)]
        dim = hidden
    layers.append(nn.Linear(dim, out_dim))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class StaticColorHead(nn.Module):
    """[P, F] features + [P, 3] view directions -> [P, 3] colour in [0, 1]."""

    def __init__(self, feat_dim: int, hidden: int):
        super().__init__()
        self.net = mlp(feat_dim + 3, hidden, 3)

    def forward(self, feat: torch.Tensor, viewdir: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(torch.cat([feat, viewdir], dim=-1)))


class TimeDensityHead(nn.Module):
    """The inner-product time query: [P, F] -> [P, T] raw densities, all frames in one matmul."""

    def __init__(self, feat_dim: int, hidden: int, n_frames: int):
        super().__init__()
        self.net = mlp(feat_dim, hidden, n_frames)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat)


class TimeColorHead(nn.Module):
    """[P, F] features + [P, 3] view directions -> [P, T, 3] colours in [0, 1]."""

    def __init__(self, feat_dim: int, hidden: int, n_frames: int):
        super().__init__()
        self.n_frames = n_frames
        self.net = mlp(feat_dim + 3, hidden, 3 * n_frames)

    def forward(self, feat: torch.Tensor, viewdir: torch.Tensor) -> torch.Tensor:
        out = self.net(torch.cat([feat, viewdir], dim=-1))
        return torch.sigmoid(out.view(-1, self.n_frames, 3))
