"""Ray samplers with resumable state."""
from __future__ import annotations

import numpy as np
import torch

from models.types import RayBatch


class EpochSampler:
    """Uniform sampling without replacement within an epoch; a fresh seeded permutation per epoch.

    The state (epoch, position) is enough to continue exactly after a resume.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int = 0, pos: int = 0):
        if n <= 0:
            raise ValueError("EpochSampler needs at least one item")
        self.n, self.batch_size, self.seed = n, min(batch_size, n), seed
        self.epoch, self.pos = epoch, pos
        self._perm = self._permutation(epoch)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def next(self) -> np.ndarray:
        """-> [B] indices."""
        if self.pos + self.batch_size > self.n:
            self.epoch, self.pos = self.epoch + 1, 0
            self._perm = self._permutation(self.epoch)
        idx = self._perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed, "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self._perm = self._permutation(self.epoch)


class KeypointSampler:
    """Batches of depth keypoint rays (:class:`dataLoader.depth_targets.KeypointTargets`) as RayBatches.

    The keypoint tensors are moved to ``device`` once; each batch only indexes them there.
    """

    def __init__(self, keypoints, batch_size: int, seed: int, device):
        self.device = device
        self.origins, self.dirs, self.t, self.sigma, self.weight = (
            x.to(device) for x in (keypoints.origins, keypoints.dirs, keypoints.t, keypoints.sigma, keypoints.weight))
        self.sampler = EpochSampler(len(self.t), batch_size, seed)

    def next(self) -> RayBatch:
        """-> [B] keypoint rays with depth, depth_sigma and depth_weight targets."""
        i = torch.from_numpy(self.sampler.next()).to(self.device)
        return RayBatch(self.origins[i], self.dirs[i], depth=self.t[i], depth_weight=self.weight[i],
                        depth_sigma=self.sigma[i])

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict()}  # keypoint-batch position, for exact resume

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])
