import numpy as np
import torch

from anomalyvae.config import Config
from anomalyvae.detectors.scoring import LatentState, Pass, fit_latent, fit_normalisation, knn_distance, latent_nll
from anomalyvae.detectors.whole import COMPUTE, WholeState


def _pass(**given):
    """A scoring pass with just the fields a test needs (the others None)."""
    from anomalyvae.vae.model import MLPVAE

    base = dict(model=MLPVAE((1, 28, 28)), x=None, out=None, mu=None, logvar=None, state=WholeState(),
                cfg=Config().validate(), precision="float32", compute=COMPUTE)
    return Pass(**{**base, **given})


def test_latent_nll_matches_sklearn_mixture_density():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    mu = torch.from_numpy(np.concatenate([rng.normal(0, 1, (300, 3)), rng.normal(5, 0.5, (300, 3))])).float()
    state = LatentState(**fit_latent(mu, components=2, seed=0))
    gmm = GaussianMixture(2, covariance_type="full", reg_covar=1e-4, random_state=0, max_iter=200).fit(mu.double().numpy())
    x = torch.randn(7, 3) * 3
    np.testing.assert_allclose(latent_nll(x, state).numpy(), -gmm.score_samples(x.double().numpy()), rtol=1e-3)


def test_knn_distance_is_the_mean_of_the_k_smallest_distances():
    codes, mu = torch.randn(1000, 4), torch.randn(300, 4)
    brute = torch.cdist(mu, codes).sort(dim=1).values[:, :5].mean(1)
    torch.testing.assert_close(knn_distance(mu, LatentState(codes=codes), 5), brute)


def test_the_knn_index_is_built_once_per_model_and_shared_by_its_device_copies():
    from anomalyvae.detectors import knn

    state = LatentState(codes=torch.randn(knn.IVF_MIN_CODES + 10, 4))
    a, b = state.to(torch.device("cpu")), state.to(torch.device("cpu"))
    assert a.knn_index(5) is b.knn_index(5) is state.knn_index(5)
    assert a.knn_index(5).ivf is not None  # a large set of codes is searched through faiss's index


def test_blur_error_forgives_a_one_pixel_shift_more_than_squared_error():
    x = torch.zeros(1, 1, 28, 28)
    x[..., 10:18, 12:14] = 1.0
    shifted = torch.roll(x, 1, dims=3)
    blur = lambda a, b: COMPUTE["blur"](_pass(x=a, out=torch.logit(b.clamp(1e-6, 1 - 1e-6))))  # noqa: E731
    assert blur(x, shifted) < 0.2 * (x - shifted).pow(2).sum()
    assert blur(x, x) < 1e-6


def test_combined_is_the_sum_of_scores_standardised_on_normal_data():
    state = WholeState()
    fit_normalisation(state, {"knn": np.array([1.0, 3.0]), "latent": np.array([10.0, 10.0])})
    assert state.mean == {"knn": 2.0, "latent": 10.0} and state.std == {"knn": 1.0, "latent": 1.0}
    p = _pass(state=state, cfg=Config(combine="knn,latent").validate())
    p.done.update(knn=torch.tensor([4.0]), latent=torch.tensor([12.0]))
    assert COMPUTE["combined"](p).item() == (4 - 2) / 1 + (12 - 10) / 1


def test_iwae_bound_is_tighter_than_the_elbo_and_deterministic():
    from anomalyvae.vae.model import build_model, elbo_terms

    torch.manual_seed(0)
    model = build_model(Config(arch="mlp", latent_dim=3, hidden=16).validate(), (1, 28, 28)).eval()
    x = model.prepare(torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8))
    cfg = Config(iwae_samples=64).validate()
    with torch.no_grad():
        mu, logvar = model.encode(x)
        gen = torch.Generator().manual_seed(0)
        neg_elbo = torch.stack([sum(elbo_terms(model, x, gen)) for _ in range(2000)]).mean(0)  # Monte Carlo
        iwae = lambda: COMPUTE["iwae"](_pass(model=model, x=x, mu=mu, logvar=logvar, cfg=cfg))  # noqa: E731
        iw = iwae()
        assert torch.all(iw < neg_elbo)
        assert torch.equal(iw, iwae())


def test_box_blur_is_avg_pool_without_the_padding():
    from anomalyvae.detectors.maps import box_blur

    x = torch.rand(3, 2, 28, 20, generator=torch.Generator().manual_seed(0))
    want = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    torch.testing.assert_close(box_blur(x), want)
