"""Pixel rays, NDC conversion and depth-space conversions, against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dataLoader.depth_space import camera_z_to_ray_param, ray_param_to_camera_z
from dataLoader.poses import CameraRig, SceneNormalization
from dataLoader.rays import camera_rays, ndc_rays, ndc_t_to_world_z, pixel_directions, world_z_to_ndc_t

DT = torch.float64


def ndc_point(h, w, focal, p: torch.Tensor, near: float = 1.0) -> torch.Tensor:
    """Project normalized-world points [N, 3] (z < 0) into NDC (the published projection)."""
    return torch.stack([-2 * focal / w * p[:, 0] / p[:, 2], -2 * focal / h * p[:, 1] / p[:, 2],
                        1 + 2 * near / p[:, 2]], -1)


def test_pixel_directions_2x2():
    f = 2.0
    d = pixel_directions(2, 2, f)
    # pixel centres (0.5, 0.5), (1.5, 0.5), (0.5, 1.5), (1.5, 1.5) -> x = (u - 1)/f, y = -(v - 1)/f, z = -1
    expected = torch.tensor([[-0.25, 0.25, -1], [0.25, 0.25, -1], [-0.25, -0.25, -1], [0.25, -0.25, -1]], dtype=DT)
    torch.testing.assert_close(d, expected)


def test_pixel_directions_at_given_coordinates():
    d = pixel_directions(24, 32, 10.0, torch.tensor([[16.0, 12.0], [0.0, 0.0], [32.0, 24.0]]))
    torch.testing.assert_close(d, torch.tensor([[0, 0, -1], [-1.6, 1.2, -1], [1.6, -1.2, -1]], dtype=DT))


def test_camera_rays_rotate_directions_and_share_origin():
    c2w = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 2], [-1, 0, 0, 3]], dtype=DT)  # looks along world -x
    o, d = camera_rays(c2w, torch.tensor([[0.0, 0.0, -1.0], [0.5, 0.0, -1.0]], dtype=DT))
    torch.testing.assert_close(o, torch.tensor([[1.0, 2, 3], [1, 2, 3]], dtype=DT))
    # camera right = world -z, back = world +x
    torch.testing.assert_close(d, torch.tensor([[-1.0, 0, 0], [-1, 0, -0.5]], dtype=DT))


def test_ndc_ray_by_hand():
    # W = 4, H = 2, f = 2: 2f/W = 1, 2f/H = 2. o = (0.5, -0.25, 0), d = (0.2, 0.1, -1)
    # shift to the near plane z = -1: t0 = 1, o' = (0.7, -0.15, -1)
    # o_ndc = (-1 * 0.7/-1, -2 * -0.15/-1, 1 + 2/-1) = (0.7, -0.3, -1)
    # d_ndc = (-1 * (0.2/-1 - 0.7/-1), -2 * (0.1/-1 - -0.15/-1), -2/-1) = (-0.5, 0.5, 2)
    o, d = ndc_rays(2, 4, 2.0, torch.tensor([[0.5, -0.25, 0.0]], dtype=DT), torch.tensor([[0.2, 0.1, -1.0]], dtype=DT))
    torch.testing.assert_close(o, torch.tensor([[0.7, -0.3, -1.0]], dtype=DT))
    torch.testing.assert_close(d, torch.tensor([[-0.5, 0.5, 2.0]], dtype=DT))


def random_world_rays(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    origins = torch.rand(n, 3, generator=g, dtype=DT) * 0.4 - 0.2
    dirs = torch.cat([torch.rand(n, 2, generator=g, dtype=DT) - 0.5,
                      -(0.5 + torch.rand(n, 1, generator=g, dtype=DT))], -1)
    return origins, dirs


def test_ndc_direction_z_is_two_and_origin_on_near_plane():
    o, d = random_world_rays(50)
    o_ndc, d_ndc = ndc_rays(24, 32, 30.0, o, d)
    torch.testing.assert_close(d_ndc[:, 2], torch.full((50,), 2.0, dtype=DT))
    torch.testing.assert_close(o_ndc[:, 2], torch.full((50,), -1.0, dtype=DT))


@pytest.mark.parametrize("z", [-1.0, -1.5, -4.0, -40.0])
def test_world_point_at_z_sits_at_ndc_t(z):
    h, w, f = 24, 32, 30.0
    o, d = random_world_rays(20, seed=1)
    s = (z - o[:, 2]) / d[:, 2]  # the world point on each ray with normalized z = Z
    p = o + s[:, None] * d
    o_ndc, d_ndc = ndc_rays(h, w, f, o, d)
    t = torch.full((20,), 1 + 1 / z, dtype=DT)
    torch.testing.assert_close(world_z_to_ndc_t(p[:, 2]), t)
    torch.testing.assert_close(o_ndc + t[:, None] * d_ndc, ndc_point(h, w, f, p))
    torch.testing.assert_close(ndc_t_to_world_z(t), p[:, 2])


def test_ndc_t_one_is_clamped_not_infinite():
    z = ndc_t_to_world_z(torch.tensor([1.0, 0.0], dtype=DT))
    assert torch.isfinite(z).all() and z[0] < -1e5 and z[1] == -1.0


def tilted_setup(ndc: bool):
    """A rig whose average pose is not the identity, a normalization, and a camera not aligned with it."""
    rots = []
    for a in (0.15, -0.1, 0.05):
        c, s = np.cos(a), np.sin(a)
        rots.append(np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.array(
            [[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]]))
    centres = np.array([[0.3, 1.0, 5.0], [-0.4, 1.2, 5.1], [0.1, 0.8, 4.9]])
    c2w = np.concatenate([np.stack(rots), centres[:, :, None]], -1)
    rig = CameraRig(c2w=c2w, hwf=(24.0, 32.0, 28.0), bounds=np.array([[2.0, 9.0], [2.5, 9.0], [3.0, 9.0]]))
    norm = SceneNormalization.from_rig(rig, [[-1.5, -1.5, -1.0], [1.5, 1.5, 1.0]], ndc=ndc)
    return rig, norm


@pytest.mark.parametrize("ndc", [True, False])
def test_camera_z_to_ray_param_agrees_with_geometry(ndc):
    rig, norm = tilted_setup(ndc)
    k = 1
    h, w, f = 24, 32, 28.0
    dirs_cam = pixel_directions(h, w, f, torch.tensor([[3.5, 4.5], [20.25, 17.0], [31.0, 1.0]]))
    z_world = torch.tensor([2.7, 4.0, 7.5], dtype=DT)
    # the world point at camera-axis depth z, built from the world pose only
    c2w_world = torch.as_tensor(rig.c2w[k])
    p_world = c2w_world[:, 3] + z_world[:, None] * (dirs_cam @ c2w_world[:, :3].T)
    avg = torch.as_tensor(norm.avg)
    p_norm = norm.scale * (p_world - avg[:, 3]) @ avg[:, :3]
    # the model's rays of that camera in normalized world
    o, d = camera_rays(torch.as_tensor(norm.apply(rig.c2w)[k]), dirs_cam)
    t = camera_z_to_ray_param(z_world, o, d, norm)
    if ndc:
        o_ndc, d_ndc = ndc_rays(*norm.ndc_hwf, o, d)
        torch.testing.assert_close(o_ndc + t[:, None] * d_ndc, ndc_point(*norm.ndc_hwf, p_norm))
        assert ((t > 0) & (t < 1)).all()
    else:
        torch.testing.assert_close(o + t[:, None] * d, p_norm)
        torch.testing.assert_close(t, z_world * norm.scale)
    torch.testing.assert_close(ray_param_to_camera_z(t, o, d, norm), z_world)


@pytest.mark.parametrize("ndc", [True, False])
def test_ray_param_to_camera_z_broadcasts_over_frames(ndc):
    rig, norm = tilted_setup(ndc)
    o, d = camera_rays(torch.as_tensor(norm.apply(rig.c2w)[0]), pixel_directions(24, 32, 28.0)[:5])
    z = torch.linspace(2.0, 8.0, 15, dtype=DT).reshape(5, 3)  # [N, T]
    t = torch.stack([camera_z_to_ray_param(z[:, j], o, d, norm) for j in range(3)], 1)
    back = ray_param_to_camera_z(t, o, d, norm)
    assert back.shape == (5, 3)
    torch.testing.assert_close(back, z)
