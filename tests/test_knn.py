"""anomalyvae.detectors.knn: the knn score's search (issue 15), exact for small sets of codes, faiss IVF for large ones."""

import torch

from anomalyvae.detectors import knn



def clustered_codes(n, d=16, seed=0):
    """Codes in clumps, as a VAE's posterior means of digits are, not uniform noise."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(30, d, generator=g) * 3
    return centres[torch.randint(30, (n,), generator=g)] + torch.randn(n, d, generator=g)


def test_small_sets_are_searched_exactly():
    codes, q = clustered_codes(500), clustered_codes(200, seed=1)
    index = knn.KnnIndex(codes, 5)
    assert index.ivf is None
    torch.testing.assert_close(index.mean_distance(q), torch.cdist(q, codes).topk(5, largest=False).values.mean(1))


def test_large_sets_agree_with_the_exact_search_for_almost_every_query():
    codes, q = clustered_codes(knn.IVF_MIN_CODES + 1000), clustered_codes(1000, seed=1)
    index = knn.KnnIndex(codes, 5)
    assert index.ivf is not None
    approx, exact = index.mean_distance(q), knn.exact_knn(q, codes, 5)
    assert (approx >= exact - 1e-4).all()  # a missed neighbour can only make the mean distance larger
    assert ((approx - exact).abs() < 1e-4).float().mean() >= 0.95


def test_a_query_scores_the_same_alone_and_in_any_batch():
    codes, q = clustered_codes(knn.IVF_MIN_CODES + 1000), clustered_codes(300, seed=1)
    index = knn.KnnIndex(codes, 5)
    full = index.mean_distance(q)
    assert torch.equal(torch.cat([index.mean_distance(q[i:i + 1]) for i in range(len(q))]), full)
    assert torch.equal(torch.cat([index.mean_distance(q[s:s + 7]) for s in range(0, len(q), 7)]), full)
    assert torch.equal(knn.KnnIndex(codes, 5).mean_distance(q), full)  # a rebuilt index: the same lists


def test_an_exact_search_scores_a_query_the_same_alone_and_in_any_batch():
    codes, q = clustered_codes(500), clustered_codes(300, seed=1)
    index = knn.KnnIndex(codes, 5)
    assert index.ivf is None
    full, picks = index.mean_distance(q), index.nearest(q)
    assert torch.equal(torch.cat([index.mean_distance(q[i:i + 1]) for i in range(len(q))]), full)
    assert torch.equal(torch.cat([index.mean_distance(q[s:s + 30]) for s in range(0, len(q), 30)]), full)
    assert torch.equal(torch.cat([index.nearest(q[i:i + 1]) for i in range(len(q))]), picks)


def test_an_index_rebuilt_from_saved_centroids_fits_nothing_and_finds_the_same(monkeypatch):
    import faiss

    codes, q = clustered_codes(knn.IVF_MIN_CODES + 1000), clustered_codes(300, seed=1)
    centroids = knn.list_centroids(codes)
    assert centroids.shape == (len(codes) // knn.PER_LIST, codes.shape[1])
    first = knn.KnnIndex(codes, 5, centroids=centroids).mean_distance(q)

    def no_kmeans(*a, **k):
        raise AssertionError("k-means ran although the centroids were given")

    monkeypatch.setattr(faiss, "Kmeans", no_kmeans)
    monkeypatch.setattr(faiss.Clustering, "train", no_kmeans)
    assert torch.equal(knn.KnnIndex(codes, 5, centroids=centroids).mean_distance(q), first)


def test_few_codes_need_no_centroids():
    assert knn.list_centroids(clustered_codes(knn.IVF_MIN_CODES - 1)) is None
