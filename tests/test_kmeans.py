"""k-means for the semantic tokenizer: planted clusters are recovered, streamed mini-batch k-means
lands near full-batch Lloyd, streamed moments equal numpy's, checkpoints round-trip, the adjusted
Rand index behaves, and data-parallel mini-batch k-means on 8 devices equals one device."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, eight_device_result

from audiolm_jax import kmeans

fit = jax.jit(kmeans.fit, static_argnames=("k", "iters", "spherical", "init"))
inertia = jax.jit(kmeans.inertia)
assign = jax.jit(kmeans.assign)
step = jax.jit(kmeans.minibatch_step)
moments_update = jax.jit(kmeans.moments_update)


def mixture(components: int, d: int, spread: float, seed: int = 0) -> np.ndarray:
    """Centres of a Gaussian mixture with unit-variance components."""
    return np.random.default_rng(seed).normal(size=(components, d)).astype(np.float32) * spread


def draw(centers: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n points of the mixture and the component each came from."""
    r = np.random.default_rng(seed)
    labels = r.integers(len(centers), size=n)
    x = centers[labels] + r.normal(size=(n, centers.shape[1])).astype(np.float32)
    return x.astype(np.float32), labels


def stream(centers: np.ndarray, batches: int, n: int, seed: int = 100):
    """A generator of `batches` batches of n points (only one batch in memory at a time)."""
    for i in range(batches):
        yield draw(centers, n, seed + i)[0]


# --- clustering quality -------------------------------------------------------------------------


def test_fit_and_fit_minibatch_recover_planted_clusters():
    centers = mixture(16, 16, spread=6.0)
    x, truth = draw(centers, 3200, seed=1)
    cents, _ = fit(jnp.asarray(x), k=16, rng=jax.random.key(0), iters=20)
    assert kmeans.adjusted_rand_index(truth, np.asarray(assign(x, cents))) > 0.95

    cents_mb, counts = kmeans.fit_minibatch(stream(centers, 20, 512), 16, jax.random.key(0))
    assert kmeans.adjusted_rand_index(truth, np.asarray(assign(x, cents_mb))) > 0.95
    assert float(jnp.sum(counts)) == 20 * 512  # no cluster was dead, so none was reassigned


def test_streamed_minibatch_within_5_percent_of_full_batch_lloyd():
    # Overlapping data: 64 components, 32 clusters, so the optimum is not obvious.
    centers = mixture(64, 16, spread=2.0)
    batches, n = 64, 1024
    cents_mb, _ = kmeans.fit_minibatch(stream(centers, batches, n), 32, jax.random.key(0))
    everything = jnp.asarray(np.concatenate(list(stream(centers, batches, n))))
    cents_lloyd, _ = fit(everything, k=32, rng=jax.random.key(0), iters=50)
    mb, lloyd = float(inertia(everything, cents_mb)), float(inertia(everything, cents_lloyd))
    assert mb <= 1.05 * lloyd, (mb, lloyd)


# --- the mini-batch update ----------------------------------------------------------------------


def test_minibatch_step_learning_rate_empty_clusters_and_padding():
    state = kmeans.MiniBatchState(
        jnp.array([[0.0, 0.0], [10.0, 10.0], [-50.0, 0.0]]), jnp.array([2.0, 0.0, 5.0])
    )
    x = jnp.array([[1.0, 1.0], [1.0, 1.0], [9.0, 9.0]])
    new, batch_inertia = step(state, x)
    # Cluster 0: (2 * 0 + 2) / (2 + 2); cluster 1 had no weight: the batch mean; 2: unchanged.
    np.testing.assert_allclose(new.centroids, [[0.5, 0.5], [9.0, 9.0], [-50.0, 0.0]])
    np.testing.assert_allclose(new.counts, [4.0, 1.0, 5.0])
    assert float(batch_inertia) == pytest.approx(2 * 2.0 + 2.0)
    # Rows of weight 0 (padding) change nothing.
    padded = jnp.concatenate([x, jnp.full((5, 2), 3.0)])
    new_p, inertia_p = step(state, padded, jnp.array([1.0] * 3 + [0.0] * 5))
    np.testing.assert_allclose(new_p.centroids, new.centroids)
    np.testing.assert_allclose(new_p.counts, new.counts)
    assert float(inertia_p) == pytest.approx(float(batch_inertia))


def test_reassignment_moves_starved_clusters_deterministically():
    x, _ = draw(mixture(4, 8, spread=4.0), 256, seed=2)
    cents = jnp.concatenate([jnp.asarray(x[:3]), jnp.full((2, 8), 1e3)])
    state = kmeans.MiniBatchState(cents, jnp.array([50.0, 50.0, 50.0, 0.0, 0.0]))
    ratio = jnp.float32(0.01)
    a, _ = step(state, x, None, jax.random.key(7), ratio)
    b, _ = step(state, x, None, jax.random.key(7), ratio)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    # The two far clusters now sit on two distinct batch points, with the smallest kept count.
    moved = np.asarray(a.centroids[3:])
    hits = [np.flatnonzero(np.all(x == row, axis=1)) for row in moved]
    assert all(len(h) == 1 for h in hits) and hits[0][0] != hits[1][0]
    np.testing.assert_allclose(a.counts[3:], jnp.min(a.counts[:3]))
    # Ratio 0: nothing moves.
    c, _ = step(state, x, None, jax.random.key(7), jnp.float32(0.0))
    np.testing.assert_array_equal(c.centroids[3:], state.centroids[3:])


def test_fit_minibatch_names_bad_shapes_and_empty_streams():
    good = np.zeros((64, 4), np.float32)
    with pytest.raises(ValueError, match=r"batch 1 has shape \(64, 5\)"):
        kmeans.fit_minibatch([good, np.zeros((64, 5))], 4, jax.random.key(0))
    with pytest.raises(ValueError, match="empty"):
        kmeans.fit_minibatch([], 4, jax.random.key(0))
    with pytest.raises(ValueError, match="init"):
        kmeans.fit_minibatch([good], 4, jax.random.key(0), init="random")
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("batch",))
    with pytest.raises(ValueError, match="'data'"):
        kmeans.fit_minibatch([good], 4, jax.random.key(0), mesh=mesh)


def test_fit_minibatch_steps_and_init_points():
    centers = mixture(8, 8, spread=6.0)
    seen = []

    def counted():
        for i, b in enumerate(stream(centers, 50, 128)):
            seen.append(i)
            yield b

    init = draw(centers, 1000, seed=3)[0]
    cents, counts = kmeans.fit_minibatch(
        counted(), 8, jax.random.key(1), init_points=init, steps=5, init="sample"
    )
    assert seen == [0, 1, 2, 3, 4]  # no batch beyond `steps` is drawn
    assert cents.shape == (8, 8) and float(jnp.sum(counts)) == 5 * 128


# --- moments ------------------------------------------------------------------------------------


def test_streamed_moments_equal_numpy_and_constant_dims_stay_finite():
    r = np.random.default_rng(0)
    scale = np.array([1.0, 0.01, 100.0, 3.0, 1.0, 0.5], np.float32)
    offset = np.array([1000.0, -5.0, 0.0, 2.0, 7.0, -300.0], np.float32)
    batches = []
    for i in range(12):
        # Drifting batches of unequal size: the merge must weight them by count.
        b = offset + scale * (r.normal(size=(200 if i % 3 else 57, 6)) + 0.3 * i)
        b[:, 4] = 7.0  # a constant dimension
        batches.append(b.astype(np.float32))
    m = kmeans.moments_init(6)
    for b in batches:
        m = moments_update(m, b)
    mean, std = map(np.asarray, kmeans.moments_finalize(m))
    allx = np.concatenate(batches).astype(np.float64)
    np.testing.assert_allclose(mean, allx.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(std[[0, 1, 2, 3, 5]], allx.std(0)[[0, 1, 2, 3, 5]], rtol=1e-4)
    assert float(m.count) == len(allx)
    z = kmeans.standardize(jnp.asarray(batches[0]), mean, std)
    assert bool(jnp.all(jnp.isfinite(z))) and float(jnp.max(jnp.abs(z[:, 4]))) == 0.0
    # Weight-0 rows and an all-padding batch change nothing.
    padded = np.concatenate([batches[0], np.full((8, 6), 1e4, np.float32)])
    w = np.r_[np.ones(len(batches[0])), np.zeros(8)].astype(np.float32)
    a = moments_update(kmeans.moments_init(6), batches[0])
    b = moments_update(kmeans.moments_init(6), padded, w)
    b = moments_update(b, padded, np.zeros_like(w))
    for fa, fb in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(fa, fb, rtol=1e-6)


# --- checkpoints --------------------------------------------------------------------------------


def test_save_load_roundtrip(tmp_path):
    r = np.random.default_rng(0)
    cents = r.normal(size=(32, 12)).astype(np.float32)
    mean, std = r.normal(size=12).astype(np.float32), r.random(12).astype(np.float32) + 0.1
    meta = {"layer": 7, "features": "w2v-bert", "points": 123456}
    kmeans.save(tmp_path / "km", cents, mean, std, meta)
    got = kmeans.load(tmp_path / "km")
    np.testing.assert_array_equal(got["centroids"], cents)
    np.testing.assert_array_equal(got["mean"], mean)
    np.testing.assert_array_equal(got["std"], std)
    assert got["meta"] == meta

    with pytest.raises(FileExistsError, match="km"):
        kmeans.save(tmp_path / "km", cents)
    kmeans.save(tmp_path / "km", jnp.asarray(cents[:4]), overwrite=True)  # no normalisation
    got = kmeans.load(str(tmp_path / "km"))
    assert got["centroids"].shape == (4, 12) and got["mean"] is None and got["std"] is None
    assert got["meta"] == {}
    with pytest.raises(ValueError, match=r"mean has shape \(3,\)"):
        kmeans.save(tmp_path / "bad", cents, mean[:3])


def test_load_of_missing_or_incomplete_checkpoint_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        kmeans.load(missing)
    kmeans.save(tmp_path / "km", np.ones((2, 3), np.float32))
    os.remove(tmp_path / "km" / "kmeans.json")  # as if the save was interrupted
    with pytest.raises(ValueError, match=str(tmp_path / "km")):
        kmeans.load(tmp_path / "km")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=str(tmp_path / "empty")):
        kmeans.load(tmp_path / "empty")


def test_load_imports_no_tensorflow(tmp_path):
    kmeans.save(tmp_path / "km", np.ones((2, 3), np.float32), meta={"a": 1})
    script = (
        "import sys; from audiolm_jax import kmeans; "
        f"r = kmeans.load({str(tmp_path / 'km')!r}); assert r['meta'] == {{'a': 1}}; "
        "print('TF' if 'tensorflow' in sys.modules else 'NO_TF')"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("NO_TF")


# --- adjusted Rand index ------------------------------------------------------------------------


def test_adjusted_rand_index():
    r = np.random.default_rng(0)
    a = r.integers(10, size=5000)
    assert kmeans.adjusted_rand_index(a, a) == pytest.approx(1.0)
    perm = r.permutation(10) + 100  # other label values for the same partition
    assert kmeans.adjusted_rand_index(a, perm[a]) == pytest.approx(1.0)
    assert abs(kmeans.adjusted_rand_index(a, r.integers(10, size=5000))) < 0.01
    # By hand: pairs together in both 1, E = 1 * 2 / 6, max 3 / 2: (2/3) / (7/6) = 4/7.
    assert kmeans.adjusted_rand_index([0, 0, 1, 2], [0, 0, 1, 1]) == pytest.approx(4 / 7)
    assert kmeans.adjusted_rand_index([0, 0, 0, 0], [0, 1, 2, 3]) == pytest.approx(0.0)
    assert kmeans.adjusted_rand_index([5, 5, 5], [1, 1, 1]) == 1.0  # 0 / 0: the same partition
    with pytest.raises(ValueError, match="equal length"):
        kmeans.adjusted_rand_index([0, 1], [0, 1, 2])


# --- data parallelism ---------------------------------------------------------------------------


@pytest.mark.slow
def test_minibatch_kmeans_on_eight_devices_equals_one_device():
    r = eight_device_result("sharded_kmeans_check.py")
    assert r["max_centroid_diff"] < 1e-4
    assert r["max_count_diff"] < 1e-3
    assert r["total_count"] != r["points"]  # the random reassignment ran (and agreed)
    # fit_kmeans (launch.py --mode=fit_kmeans) on the 8-device mesh: saved, loaded, used.
    assert r["workflow_codes_used"] >= 2 and r["workflow_ids_shape"] == [1, 25]
    assert r["workflow_loaded_equals_fitted"]
    assert r["centroid_devices"] == 8 and r["replicated"] and r["one_device"] == 1


def test_refinement_passes_reach_full_batch_lloyd():
    """fit_minibatch's Lloyd polish over the kept batches: never worse than the stream alone,
    and within 1% of full-batch Lloyd from k-means++ on the same points."""
    centers = mixture(64, 16, spread=2.0)
    batches, n = 16, 1024
    plain, _ = kmeans.fit_minibatch(stream(centers, batches, n), 32, jax.random.key(0))
    refined, counts = kmeans.fit_minibatch(
        stream(centers, batches, n),
        32,
        jax.random.key(0),
        refine_batches=batches,
        refine_passes=50,
    )
    assert float(jnp.sum(counts)) <= batches * n  # counts are still the stream's weights
    everything = jnp.asarray(np.concatenate(list(stream(centers, batches, n))))
    lloyd, _ = fit(everything, k=32, rng=jax.random.key(0), iters=50)
    mb, ref, full = (float(inertia(everything, c)) for c in (plain, refined, lloyd))
    assert ref < mb and ref <= 1.01 * full, (mb, ref, full)
