"""What a model thinks is normal: inputs decoded from codes drawn from the prior N(0, I).

The global VAE decodes whole images; the local detector's VAE decodes patches, so its grid shows the local
textures it learned. Drawn from a fixed seed, so the same model always shows the same grid.
"""

from __future__ import annotations

from pathlib import Path

import torch

SEED = 0


@torch.inference_mode()
def prior_samples(det, n: int = 64, seed: int = SEED) -> torch.Tensor:
    """n decoded prior samples as float images (n, C, H, W) in [0, 1] (patches for the local detector)."""
    model = det.model_.eval()
    latent = model.fc_mu.out_features
    p = next(model.parameters())
    z = torch.randn(n, latent, generator=torch.Generator().manual_seed(seed)).to(p.device, p.dtype)
    return model.mean(model.decode(z)).float().clamp(0, 1).cpu()


def sample_grid(det, out: str | Path, n: int = 64, seed: int = SEED) -> Path:
    """A PNG grid of prior samples (8 a row), enlarged so that patches of 8 px can be seen."""
    import torch.nn.functional as F
    from torchvision.utils import save_image

    x = prior_samples(det, n, seed)
    side = x.shape[-1]
    if side < 64:  # whole-number zoom: pixels stay square
        x = F.interpolate(x, scale_factor=max(1, 64 // side), mode="nearest")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(x, out, nrow=8, padding=2, pad_value=1.0)
    return out
