"""What a model thinks is normal: inputs decoded from codes drawn from the prior N(0, I).

The global VAE decodes whole images; the local detector's VAE decodes patches, so its grid shows the local
textures it learned. Drawn from a fixed seed, so the same model always shows the same grid. A model trained with
labels (use_labels) shows one normal class on request: of many prior draws, those its classification head is
surest belong to that class (the prior itself is not conditioned on the class).
"""

from __future__ import annotations

from pathlib import Path

import torch

SEED = 0


DRAWS_PER_SAMPLE = 64  # prior draws per requested sample of one class: the head keeps its surest n


@torch.inference_mode()
def prior_samples(det, n: int = 64, seed: int = SEED, label: int | None = None) -> torch.Tensor:
    """n decoded prior samples as float images (n, C, H, W) in [0, 1] (patches for the local detector); with
    `label`, the n draws whose decoded images the classification head is surest show that normal class."""
    from ..errors import InvalidInput
    from .model import class_logits

    model = det.model_.eval()
    if hasattr(model, "sample_prior"):  # a spatial code (the compare detector's restorer): its own shape
        return model.sample_prior(n, det.input_shape_, torch.Generator().manual_seed(seed)).float().cpu()
    latent = model.fc_mu.out_features
    p = next(model.parameters())
    draws = n if label is None else n * DRAWS_PER_SAMPLE
    z = torch.randn(draws, latent, generator=torch.Generator().manual_seed(seed)).to(p.device, p.dtype)
    if label is not None:
        if not det.config_.use_labels:
            raise InvalidInput("--class needs a model trained with --use-labels; this one learnt no classes")
        classes = model.classes.tolist()
        if label not in classes:
            raise InvalidInput(f"--class {label} is not one of the model's normal classes: "
                               f"{', '.join(map(str, classes))}")
        seen = model.mean(model.decode(z))  # what each draw decodes to, as the head reads it: through the encoder
        sure = torch.log_softmax(class_logits(model, model.hidden(seen), z), dim=1)[:, classes.index(label)]
        z = z[sure.topk(n).indices]
    return model.mean(model.decode(z)).float().clamp(0, 1).cpu()


def sample_grid(det, out: str | Path, n: int = 64, seed: int = SEED, label: int | None = None) -> Path:
    """A PNG grid of prior samples (8 a row), enlarged so that patches of 8 px can be seen."""
    import torch.nn.functional as F
    from torchvision.utils import save_image

    x = prior_samples(det, n, seed, label)
    side = x.shape[-1]
    if side < 64:  # whole-number zoom: pixels stay square
        x = F.interpolate(x, scale_factor=max(1, 64 // side), mode="nearest")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(x, out, nrow=8, padding=2, pad_value=1.0)
    return out
