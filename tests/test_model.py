import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence as torch_kl

from anomalyvae.config import Config
from anomalyvae.vae.model import MLPVAE, build_model, elbo_terms, kl_divergence, reparameterize


def test_kl_matches_the_distributions_library():
    mu, logvar = torch.randn(5, 7), torch.randn(5, 7)
    q = Normal(mu, torch.exp(0.5 * logvar))
    p = Normal(torch.zeros(7), torch.ones(7))
    assert torch.allclose(kl_divergence(mu, logvar), torch_kl(q, p).sum(1), atol=1e-5)


def test_kl_is_zero_exactly_at_the_prior():
    assert torch.all(kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)) == 0)


def test_reconstruction_is_bernoulli_negative_log_likelihood():
    logits, x = torch.randn(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    expected = -(x * torch.log(torch.sigmoid(logits)) + (1 - x) * torch.log(1 - torch.sigmoid(logits))).flatten(1).sum(1)
    model = MLPVAE((1, 28, 28))
    assert torch.allclose(model.nll(logits, x), expected, rtol=1e-4)
    binary = (x > 0.5).float()
    assert torch.allclose(model.nll(logits, binary), -Bernoulli(logits=logits).log_prob(binary).flatten(1).sum(1), rtol=1e-4)


def test_feature_vectors_use_a_gaussian_likelihood_with_a_learnt_scale():
    model = MLPVAE((6,), hidden=8, latent_dim=2, input_kind="features")
    with torch.no_grad():
        model.log_scale.copy_(torch.linspace(-1, 1, 6))
    mean, x = torch.randn(4, 6), torch.randn(4, 6)
    expected = -Normal(mean, torch.exp(model.log_scale)).log_prob(x).sum(1)
    assert torch.allclose(model.nll(mean, x), expected, rtol=1e-5)


def test_reparameterize_is_differentiable_and_has_the_right_moments():
    mu = torch.full((200000, 1), 2.0, requires_grad=True)
    logvar = torch.full((200000, 1), math.log(9.0), requires_grad=True)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    assert abs(z.mean().item() - 2.0) < 0.03 and abs(z.std().item() - 3.0) < 0.03
    z.sum().backward()
    assert mu.grad is not None and logvar.grad is not None


def test_both_architectures_map_images_to_logits_of_the_same_shape():
    for arch in ("mlp", "conv"):
        model = build_model(Config(arch=arch, latent_dim=5).validate(), (1, 28, 28))
        x = model.prepare(torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8))
        assert x.shape == (3, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
        mu, logvar = model.encode(x)
        assert mu.shape == logvar.shape == (3, 5)
        assert model.decode(mu).shape == x.shape
        rec, kl = elbo_terms(model, x)
        assert rec.shape == kl.shape == (3,) and torch.all(rec > 0) and torch.all(kl >= 0)


def test_forward_returns_decoder_output_mu_and_logvar():
    model = build_model(Config(arch="conv", latent_dim=5).validate(), (3, 64, 64))
    out, mu, logvar = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 3, 64, 64) and mu.shape == logvar.shape == (2, 5)


@pytest.mark.parametrize("size, steps", [(28, 2), (32, 2), (64, 3), (128, 4), (224, 5), (256, 5), (30, 1), (8, 1)])
def test_the_conv_depth_follows_the_image_size(size, steps):
    from anomalyvae.vae.model import ConvVAE

    model = ConvVAE((3, size, size))
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.enc) == steps
    assert model(torch.rand(1, 3, size, size))[0].shape == (1, 3, size, size)


@pytest.mark.parametrize("size", [100, 7, 50])
def test_an_image_size_the_conv_model_cannot_take_is_an_error_listing_sizes_that_work(size):
    from anomalyvae.errors import AnomalyVAEError
    from anomalyvae.vae.model import ConvVAE

    with pytest.raises(AnomalyVAEError, match=f"cannot take image_size {size}.*sizes near it that work: \\d+"):
        ConvVAE((1, size, size))
