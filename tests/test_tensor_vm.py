"""TensoRF VM field: cardinality, float64 gradients, exact upsample/crop on a linear field, TV."""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from models.tensor_vm import MAT_IDS, VEC_IDS, VMField

DT = torch.float64


def test_cardinality():
    field = VMField([5, 6, 7], [2, 3, 4], out_dim=8)
    # plane m spans axes MAT_IDS[m] = (a, b) -> [1, C, R_b, R_a]; line m along VEC_IDS[m] -> [1, C, R_v, 1]
    assert [tuple(p.shape) for p in field.planes] == [(1, 2, 6, 5), (1, 3, 7, 5), (1, 4, 7, 6)]
    assert [tuple(p.shape) for p in field.lines] == [(1, 2, 7, 1), (1, 3, 6, 1), (1, 4, 5, 1)]
    assert tuple(field.basis.weight.shape) == (8, 9) and field.basis.bias is None
    assert field.resolution == [5, 6, 7]
    n_params = sum(p.numel() for p in field.parameters())
    assert n_params == (2 * 30 + 3 * 35 + 4 * 42) + (2 * 7 + 3 * 6 + 4 * 5) + 72
    assert len(field.grid_parameters()) == 6 and len(field.net_parameters()) == 1
    xyz = torch.rand(11, 3) * 2 - 1
    assert field(xyz).shape == (11, 8)
    assert field.components(xyz).shape == (11, 9)
    scalar = VMField([5, 6, 7], [2, 3, 4])
    assert scalar(xyz).shape == (11,) and scalar.basis is None and scalar.net_parameters() == []


def interior_points(resolution, n: int, seed: int = 0) -> torch.Tensor:
    """[n, 3] normalized coordinates well inside grid cells (away from knots, where grid_sample kinks)."""
    g = torch.Generator().manual_seed(seed)
    res = torch.tensor(resolution, dtype=DT)
    cell = torch.floor(torch.rand(n, 3, generator=g, dtype=DT) * (res - 1))
    frac = 0.2 + 0.6 * torch.rand(n, 3, generator=g, dtype=DT)
    return -1 + 2 * (cell + frac) / (res - 1)


@pytest.mark.parametrize("out_dim", [None, 3])
def test_gradcheck_wrt_planes_and_lines(out_dim):
    field = VMField([4, 5, 6], [2, 1, 3], out_dim=out_dim).double()
    xyz = interior_points([4, 5, 6], 7)
    names = [n for n, _ in field.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in field.parameters())

    def f(*ps):
        return functional_call(field, dict(zip(names, ps)), (xyz,))

    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("out_dim", [None, 3])
def test_gradcheck_wrt_coordinates(out_dim):
    field = VMField([4, 5, 6], [2, 1, 3], out_dim=out_dim).double()
    xyz = interior_points([4, 5, 6], 9, seed=1).requires_grad_(True)
    assert torch.autograd.gradcheck(field, (xyz,), eps=1e-7, atol=1e-6)


def linear_field(resolution, n_comp, seed: int = 0):
    """A VMField whose planes and lines hold linear functions; returns (field, expected function)."""
    g = torch.Generator().manual_seed(seed)
    field = VMField(resolution, n_comp).double()
    coefs = []
    for m, ((a, b), v) in enumerate(zip(MAT_IDS, VEC_IDS)):
        c = n_comp[m]
        pa, pb, pc, la, lb = (torch.randn(c, 1, 1, generator=g, dtype=DT) for _ in range(5))
        u = torch.linspace(-1, 1, resolution[a], dtype=DT)[None, None, :]
        w = torch.linspace(-1, 1, resolution[b], dtype=DT)[None, :, None]
        z = torch.linspace(-1, 1, resolution[v], dtype=DT)[None, :, None]
        with torch.no_grad():
            field.planes[m].copy_((pa * u + pb * w + pc)[None])
            field.lines[m].copy_((la * z + lb)[None])
        coefs.append((a, b, v, pa.flatten(), pb.flatten(), pc.flatten(), la.flatten(), lb.flatten()))

    def expected(xyz):
        out = torch.zeros(xyz.shape[0], dtype=DT)
        for a, b, v, pa, pb, pc, la, lb in coefs:
            plane = pa * xyz[:, a:a + 1] + pb * xyz[:, b:b + 1] + pc
            line = la * xyz[:, v:v + 1] + lb
            out = out + (plane * line).sum(-1)
        return out

    return field, expected


def test_lookup_matches_hand_formula_on_a_linear_field():
    field, expected = linear_field([4, 5, 6], [2, 3, 1])
    xyz = torch.rand(50, 3, dtype=DT) * 2 - 1
    torch.testing.assert_close(field(xyz), expected(xyz))


def test_upsample_preserves_a_linear_field():
    field, expected = linear_field([4, 5, 6], [2, 3, 1], seed=2)
    xyz = torch.rand(200, 3, dtype=DT) * 2 - 1
    before = field(xyz)
    old_ids = {id(p) for p in field.parameters()}
    field.upsample([9, 11, 7])
    assert field.resolution == [9, 11, 7]
    assert [tuple(p.shape) for p in field.planes] == [(1, 2, 11, 9), (1, 3, 7, 9), (1, 1, 7, 11)]
    assert not old_ids & {id(p) for p in field.grid_parameters()}  # parameters replaced
    torch.testing.assert_close(field(xyz), before)
    torch.testing.assert_close(field(xyz), expected(xyz))


def test_crop_keeps_values_inside_the_kept_voxels():
    field = VMField([8, 9, 10], [2, 3, 2], out_dim=4).double()
    lo, hi = [2, 1, 3], [7, 9, 8]
    g = torch.Generator().manual_seed(3)
    # continuous voxel indices inside [lo, hi - 1] per axis, including the kept voxels themselves
    idx = torch.stack([lo[i] + torch.rand(100, generator=g, dtype=DT) * (hi[i] - 1 - lo[i]) for i in range(3)], 1)
    corners = torch.tensor([lo, [h - 1 for h in hi], [3, 4, 5]], dtype=DT)
    idx = torch.cat([idx, corners])
    res_old = torch.tensor([8, 9, 10], dtype=DT)
    before = field(-1 + 2 * idx / (res_old - 1))
    field.crop(lo, hi)
    assert field.resolution == [5, 8, 5]
    after = field(-1 + 2 * (idx - torch.tensor(lo, dtype=DT)) / (torch.tensor(field.resolution, dtype=DT) - 1))
    torch.testing.assert_close(after, before)


def test_tv_of_constant_planes_is_zero_and_hand_case():
    field = VMField([4, 5, 6], [2, 2, 2])
    with torch.no_grad():
        for p in field.planes:
            p.fill_(0.7)
    assert field.tv_loss().item() == 0.0
    field = VMField([2, 2, 2], [1, 1, 1])
    with torch.no_grad():
        field.planes[0].copy_(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))  # differences only along width: 1
        field.planes[1].copy_(torch.tensor([[[[0.0, 0.0], [2.0, 2.0]]]]))  # differences only along height: 2
        field.planes[2].fill_(3.0)
    assert field.tv_loss().item() == pytest.approx(1.0 + 4.0)
