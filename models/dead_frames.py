"""Dead frames of the dynamic branch: a frame whose raw dynamic density went negative at every point.

The time density head gives each frame its own output row, behind a relu. Adam moves a row by about its
learning rate per step whatever the gradient's size, so a frame pushed toward "less density" long enough can
end up negative at every point; relu then passes no gradient, and that frame's movers are gone for good.
This was measured on the family: frame 10 of two seed-1 runs, -2.1 and -0.6 dB on the scene, the movers
missing in that frame alone. A dead row is restarted from its nearest live frame, which is a good start
because moving content is continuous in time. Its density and colour rows (and its static-share gate row,
with ``dynamic_compose = gate``) are copied, and their optimizer moments cleared. A model without dead frames
is left untouched.
"""
from __future__ import annotations

import torch


def probe_points(aabb: torch.Tensor, n: int = 24) -> torch.Tensor:
    """Cell centres of an n^3 grid over aabb [2, 3] -> [n^3, 3] (deterministic: no RNG is drawn)."""
    u = (torch.arange(n, dtype=torch.float32, device=aabb.device) + 0.5) / n
    g = torch.stack(torch.meshgrid(u, u, u, indexing="ij"), -1).reshape(-1, 3)
    return aabb[0] + g * (aabb[1] - aabb[0])


@torch.no_grad()
def dead_frames(model, points: torch.Tensor) -> list[int]:
    """Frames whose raw dynamic density is <= 0 at every probe point [P, 3] while another frame's is not."""
    raw = model.dyn_density_head(model.dyn_density(model.normalize_coords(points)))  # [P, T]
    alive = (raw > 0).any(0).tolist()
    return [t for t, a in enumerate(alive) if not a] if any(alive) else []


def nearest_alive(t: int, dead: set[int], n_frames: int) -> int:
    """The live frame nearest to t (the earlier one on a tie)."""
    return min((s for s in range(n_frames) if s not in dead), key=lambda s: (abs(s - t), s))


@torch.no_grad()
def revive(model, optimizer: torch.optim.Optimizer | None, frames: list[int]) -> list[tuple[int, int]]:
    """Copy each dead frame's rows of the last density / colour (/ gate) layers from its nearest live frame and
    clear their Adam moments. -> [(dead frame, source frame)]."""
    n = model.cfg.n_frames
    pairs = [(t, nearest_alive(t, set(frames), n)) for t in frames]
    # density row t; colour rows 3t..3t+2 (TimeColorHead's [T, 3] view); gate row t
    layers = [(model.dyn_density_head.net[-1], 1), (model.dyn_color_head.net[-1], 3)]
    if hasattr(model, "dyn_gate"):
        layers.append((model.dyn_gate, 1))
    for t, s in pairs:
        for layer, k in layers:
            dst, src = list(range(k * t, k * t + k)), list(range(k * s, k * s + k))
            for p in (layer.weight, layer.bias):
                p[dst] = p[src]
                state = optimizer.state.get(p, {}) if optimizer is not None else {}
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key][dst] = 0
    return pairs
