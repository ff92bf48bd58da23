"""TensoRF VM-split field: three planes and three lines, bilinear lookups.

Plane m spans the axis pair ``MAT_IDS[m]`` and pairs with the line along ``VEC_IDS[m]``
(XY-plane with Z-line, XZ with Y, YZ with X). Plane m has shape [1, C_m, R_b, R_a] for
axes (a, b); line m has shape [1, C_m, R_axis, 1]. Coordinates are normalized to
[-1, 1] over the field's aabb before lookup (align_corners=True).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAT_IDS = ((0, 1), (0, 2), (1, 2))
VEC_IDS = (2, 1, 0)


class VMField(nn.Module):
    """A VM-factorized field.

    With ``out_dim`` None it is a scalar field (sum of all plane*line products);
    otherwise the per-component products [P, sum(C)] go through a bias-free linear
    "basis" to [P, out_dim].
    """

    def __init__(self, resolution: list[int], n_comp: list[int], out_dim: int | None = None,
                 init_std: float = 0.1):
        super().__init__()
        self.n_comp = list(n_comp)
        self.out_dim = out_dim
        self.planes = nn.ParameterList()
        self.lines = nn.ParameterList()
        for m, ((a, b), v) in enumerate(zip(MAT_IDS, VEC_IDS)):
            c = self.n_comp[m]
            self.planes.append(nn.Parameter(init_std * torch.randn(1, c, resolution[b], resolution[a])))
            self.lines.append(nn.Parameter(init_std * torch.randn(1, c, resolution[v], 1)))
        self.basis = nn.Linear(sum(self.n_comp), out_dim, bias=False) if out_dim is not None else None

    @property
    def resolution(self) -> list[int]:
        """[Rx, Ry, Rz] read from the live parameters."""
        return [self.lines[2].shape[2], self.lines[1].shape[2], self.lines[0].shape[2]]

    def grid_parameters(self) -> list[nn.Parameter]:
        return [*self.planes, *self.lines]

    def net_parameters(self) -> list[nn.Parameter]:
        return list(self.basis.parameters()) if self.basis is not None else []

    def components(self, xyz: torch.Tensor) -> torch.Tensor:
        """xyz: [P, 3] in [-1, 1] -> per-component products [P, sum(C)]."""
        feats = []
        for m, ((a, b), v) in enumerate(zip(MAT_IDS, VEC_IDS)):
            plane_grid = xyz[:, (a, b)].view(1, -1, 1, 2)
            line_grid = torch.stack([torch.zeros_like(xyz[:, v]), xyz[:, v]], dim=-1).view(1, -1, 1, 2)
            p = F.grid_sample(self.planes[m], plane_grid, align_corners=True).view(self.n_comp[m], -1)
            ln = F.grid_sample(self.lines[m], line_grid, align_corners=True).view(self.n_comp[m], -1)
            feats.append(p * ln)
        return torch.cat(feats, dim=0).T

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        """xyz: [P, 3] in [-1, 1] -> [P] (scalar field) or [P, out_dim]."""
        comp = self.components(xyz)
        if self.basis is None:
            return comp.sum(-1)
        return self.basis(comp)

    @torch.no_grad()
    def upsample(self, resolution: list[int]) -> None:
        """Resample every plane and line to ``resolution`` [Rx, Ry, Rz] (bilinear, align_corners)."""
        for m, ((a, b), v) in enumerate(zip(MAT_IDS, VEC_IDS)):
            self.planes[m] = nn.Parameter(F.interpolate(
                self.planes[m].data, size=(resolution[b], resolution[a]), mode="bilinear", align_corners=True))
            self.lines[m] = nn.Parameter(F.interpolate(
                self.lines[m].data, size=(resolution[v], 1), mode="bilinear", align_corners=True))

    @torch.no_grad()
    def crop(self, lo: list[int], hi: list[int]) -> None:
        """Keep voxel indices [lo, hi) per axis (x, y, z): values at kept voxels are unchanged."""
        for m, ((a, b), v) in enumerate(zip(MAT_IDS, VEC_IDS)):
            self.planes[m] = nn.Parameter(self.planes[m].data[..., lo[b]:hi[b], lo[a]:hi[a]].contiguous())
            self.lines[m] = nn.Parameter(self.lines[m].data[..., lo[v]:hi[v], :].contiguous())

    def tv_loss(self) -> torch.Tensor:
        """Total variation of the planes: sum over planes of mean squared neighbour differences."""
        total = self.planes[0].new_zeros(())
        for p in self.planes:
            total = total + (p[..., 1:, :] - p[..., :-1, :]).pow(2).mean() + (p[..., 1:] - p[..., :-1]).pow(2).mean()
        return total
