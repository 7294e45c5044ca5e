"""The Stage-2 environment and rewards: local refresh, full refresh, drift, fidelity; nDCG via trec_eval."""

import numpy as np
import pytest

from searchr3.train import reward
from searchr3.train.env import EnvConfig, RetrievalEnv, knn_graph


class Drifting:
    """A stand-in policy: vector = normalise(base[i] @ A). `move()` is a policy update: it
    perturbs A (all vectors turn together) and each document's own base (they move apart)."""

    def __init__(self, n=300, dim=16, sigma=0.0, seed=0):
        rng = np.random.default_rng(seed)
        self.base = rng.standard_normal((n, dim)).astype(np.float32)
        self.A = np.eye(dim, dtype=np.float32)
        self.sigma, self.rng, self.calls, self.rows = sigma, rng, [], []

    def __call__(self, rows):
        self.calls.append(len(rows))
        self.rows.append([int(r) for r in rows])
        x = self.base[list(rows)] @ self.A
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def query(self, doc, noise=1.0):
        x = (self.base[doc] + noise * self.rng.standard_normal(self.base.shape[1])) @ self.A
        return (x / np.linalg.norm(x)).astype(np.float32)

    def move(self):
        d = self.A.shape[0]
        self.A += (self.sigma * self.rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
        self.base += (self.sigma * self.rng.standard_normal(self.base.shape)).astype(np.float32)


def test_ndcg_rewards_match_hand_values_and_gain_forms():
    qrels = [{"a": 1}, {"a": 1}, {"a": 2, "b": 1}]
    rankings = [["a", "x", "y"], ["x", "a", "y"], ["b", "a", "y"]]
    r = reward.ndcg_rewards(qrels, rankings, k=3)
    ideal3 = 2 + 1 / np.log2(3)
    np.testing.assert_allclose(r, [1.0, 1 / np.log2(3), (1 + 2 / np.log2(3)) / ideal3], atol=1e-4)
    e = reward.ndcg_rewards(qrels, rankings, k=3, gain="exponential")  # gains 3 and 1
    np.testing.assert_allclose(e[2], (1 + 3 / np.log2(3)) / (3 + 1 / np.log2(3)), atol=1e-4)
    assert reward.ndcg_rewards([{"a": 1}], [["x", "y"]], k=2)[0] == 0.0
    with pytest.raises(ValueError, match="gain"):
        reward.ndcg_rewards(qrels, rankings, 3, gain="cubic")


def test_shaped_rewards_and_group_advantages():
    shaped = reward.shaped_rewards(np.array([1.0, 0.5]), [False, True], [70, 10], format_penalty=0.5,
                                   length_penalty=0.01, length_free=64)
    np.testing.assert_allclose(shaped, [1.0 - 0.06, 0.0])
    adv = reward.group_advantages(np.array([1.0, 0.0, 0.5, 0.5]), group=2)
    np.testing.assert_allclose(adv, [1, -1, 0, 0], atol=1e-5)  # a tied group carries no signal
    stats = reward.group_stats(np.array([1.0, 1.0, 0.5, 0.5, 0.2, 0.8]), group=2)
    assert stats["ndcg_tied_groups"] == pytest.approx(2 / 3)  # the perfect pair and the 0.5 pair
    assert stats["ndcg_perfect_groups"] == pytest.approx(1 / 3)  # only the first tied at nDCG 1
    assert stats["ndcg_group_std"] == pytest.approx(0.3 / 3)
    with pytest.raises(ValueError, match="groups"):
        reward.group_advantages(np.ones(3), group=2)


def test_fidelity_measures():
    assert reward.fidelity(np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.6, 1.0]))["spearman"] == pytest.approx(1.0)
    f = reward.fidelity(np.array([0.1, 0.5, 0.9]), np.array([0.9, 0.5, 0.1]))
    assert f["spearman"] == pytest.approx(-1.0) and f["mean_abs_diff"] == pytest.approx(16 / 30)
    assert reward.fidelity(np.zeros(3), np.zeros(3))["spearman"] == 1.0


def test_knn_graph_is_exact_and_excludes_self():
    x = np.eye(4, dtype=np.float32)
    x[1] = [0.9, 0.1, 0, 0]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    g = knn_graph(x, 2)
    assert g.shape == (4, 2) and all(i not in g[i] for i in range(4))
    assert g[0, 0] == 1 and g[1, 0] == 0


def test_local_refresh_encodes_only_the_affected_region():
    enc = Drifting(n=300)
    env = RetrievalEnv([f"d{i}" for i in range(300)], enc, EnvConfig(top_k=10, reward_k=10, neighbours=2,
                                                                       full_every=0, drift_bound=1.0))
    assert enc.calls == [300] and env.total_encodings == 0  # the initial encode is not a refresh
    vectors = np.stack([enc.query(5), enc.query(5), enc.query(7)])
    qrels = [{"d5": 1}, {"d5": 1}, {"d7": 1}]
    expected = env.affected(qrels, vectors)
    assert {5, 7} <= set(expected.tolist()) and len(expected) <= 2 + 3 * 10 * 3
    result = env.step(qrels, vectors)
    assert result.encodings == len(expected) < 300 and not result.full_refresh
    assert enc.rows[-1] == expected.tolist()  # re-encoded exactly the affected region
    assert result.drift == pytest.approx(0.0, abs=1e-6)  # the policy did not move
    assert result.ndcg.shape == (3,) and result.ndcg.max() > 0


def test_full_refresh_every_r_steps_on_drift_and_in_exact_mode():
    enc = Drifting(n=200)
    ids = [f"d{i}" for i in range(200)]
    env = RetrievalEnv(ids, enc, EnvConfig(top_k=10, full_every=3, drift_bound=1.0))
    q = [{"d1": 1}]
    v = enc.query(1)[None]
    assert [env.step(q, v).full_refresh for _ in range(6)] == [False, False, True, False, False, True]

    exact = RetrievalEnv(ids, enc, EnvConfig(refresh="full", top_k=10))
    assert exact.step(q, v).encodings == 200

    moving = Drifting(n=200, sigma=0.5)
    env = RetrievalEnv(ids, moving, EnvConfig(top_k=10, full_every=0, drift_bound=0.01))
    moving.move()
    result = env.step(q, moving.query(1)[None])
    assert result.drift > 0.01 and result.full_refresh and result.encodings == 200  # each document once


class NeverRefreshed(RetrievalEnv):
    """The control: a cache that is never refreshed between fidelity checks."""

    def refresh(self, rows):
        return 0.0


def fidelity_run(env_class, sigma=0.2):
    enc = Drifting(n=400, dim=16, sigma=sigma, seed=1)
    env = env_class([f"d{i}" for i in range(400)], enc,
                    EnvConfig(top_k=10, neighbours=0, full_every=0, drift_bound=1.0, fidelity_every=5,
                              reward="ndcg", margin_weight=0.0, fresh_rounds=0))
    fidelities, encodings = [], []
    for step in range(10):
        enc.move()
        docs = [(step * 8 + j) % 400 for j in range(8)]
        vectors = np.stack([enc.query(d) for d in docs for _ in range(4)])
        qrels = [{f"d{d}": 1} for d in docs for _ in range(4)]
        result = env.step(qrels, vectors, forced=[False] * 32, lengths=[10] * 32)
        encodings.append(result.encodings)
        if result.fidelity:
            fidelities.append(result.fidelity)
    return fidelities, encodings


def test_local_refresh_rewards_track_exact_rewards_where_a_stale_cache_does_not():
    local, encodings = fidelity_run(RetrievalEnv)
    stale, _ = fidelity_run(NeverRefreshed)
    assert len(local) == len(stale) == 2
    assert max(encodings) < 0.6 * 400  # 32 rollouts x top-10 on a 400-doc corpus: about half of it
    for f_local, f_stale in zip(local, stale):
        assert f_local["spearman"] > 0.95 and f_local["mean_abs_diff"] < 0.02
        assert f_stale["spearman"] < 0.9 and f_stale["mean_abs_diff"] > 0.05  # the drift is real


def test_config_validation():
    with pytest.raises(ValueError, match="top_k"):
        EnvConfig(top_k=5, reward_k=10)
    with pytest.raises(ValueError, match="refresh"):
        EnvConfig(refresh="sometimes")
    with pytest.raises(ValueError, match="duplicate"):
        RetrievalEnv(["a", "a"], Drifting(n=2))
    with pytest.raises(ValueError, match="reward"):
        EnvConfig(reward="ndcg@10")


def test_dense_rank_reward_margin_ties_and_mean_only_advantages():
    scores = np.array([[0.9, 0.5, 0.7, 0.1], [0.2, 0.8, 0.3, 0.1], [0.2, 0.8, 0.3, 0.1]])
    ranks, margins = reward.positive_ranks(scores, [[1], [1, 3], []])
    assert ranks.tolist() == [3, 1, 5] and margins.tolist() == pytest.approx([-0.4, 0.5, 0.0])
    assert reward.rank_rewards(np.array([1, 2, 10, 11, 100, 101]), "rank").tolist() == pytest.approx(
        [1.0, 1 - 0.5 / 9, 0.5, 0.5 * 89 / 90, 0.0, 0.0])
    assert reward.rank_rewards(np.array([1, 4]), "reciprocal_rank").tolist() == [1.0, 0.25]
    bonus = reward.margin_bonus(np.array([0.0, 0.05, -10.0]), weight=0.1, scale=0.05)
    assert bonus.tolist() == pytest.approx([0.0, 0.1 * np.tanh(1.0), -0.1], abs=1e-6)
    with pytest.raises(ValueError, match="form"):
        reward.rank_rewards(np.array([1]), "ndcg")
    rewards = np.array([1.0, 1.0, 0.2, 0.4])
    assert reward.tied_groups(rewards, 2).tolist() == [True, False]
    assert reward.group_advantages(rewards, 2, norm="mean").tolist() == pytest.approx([0.0, 0.0, -0.1, 0.1])
    assert reward.group_advantages(rewards, 2, norm="std").tolist() == pytest.approx([0, 0, -1, 1], abs=1e-4)


def test_rewards_rank_the_positive_over_the_whole_corpus():
    enc = Drifting(n=300)
    env = RetrievalEnv([f"d{i}" for i in range(300)], enc, EnvConfig(top_k=10, reward_k=10, neighbours=0,
                                                                       margin_weight=0.0))
    far = -enc(range(300))[42]  # a query pointing away from d42: its rank is far past 10
    scored = env.rewards([{"d42": 1}, {"d42": 1}], np.stack([enc(range(300))[42], far]), [False] * 2, [0] * 2)
    assert scored["ranks"][0] == 1 and scored["ranks"][1] > 100
    assert scored["ndcg"].tolist() == pytest.approx([1.0, 0.0]) and scored["base"].tolist() == [1.0, 0.0]
    others = env.rewards([{"d42": 1}] * 300, enc(range(300)), [False] * 300, [0] * 300)  # each document as query
    midway = (others["ranks"] > 10) & (others["ranks"] < 100)
    assert midway.any() and (others["ndcg"][midway] == 0).all()  # nDCG@10 sees nothing past 10...
    assert ((0 < others["base"][midway]) & (others["base"][midway] < 0.5)).all()  # ...the rank reward does


def test_a_stale_document_that_enters_a_top_k_is_refreshed():
    enc = Drifting(n=60, dim=8, seed=3)
    env = RetrievalEnv([f"d{i}" for i in range(60)], enc, EnvConfig(top_k=5, reward_k=5, neighbours=0,
                                                                      full_every=0, drift_bound=5.0))
    q = enc.query(0, noise=0.0)
    cached_top = env.top(q[None], 6)[0]
    for row in cached_top[:5]:  # the policy moves the cached top-5 away from the query...
        enc.base[row] = -enc.base[row]
    enc.base[cached_top[5]] = q  # ...and the sixth, not in the affected region, onto it
    result = env.step([{"d0": 1}], q[None])
    assert cached_top[5] not in enc.rows[1] and cached_top[5] in sum(enc.rows[2:], [])
    assert result.stale_admitted >= 1 and result.encodings == sum(len(r) for r in enc.rows[1:])
    np.testing.assert_allclose(env.vectors[cached_top[5]], q, atol=1e-6)  # fresh now
    assert env.top(q[None], 1)[0, 0] == cached_top[5]


def test_the_graph_follows_refreshed_documents():
    enc = Drifting(n=80, dim=8, sigma=0.3, seed=4)
    env = RetrievalEnv([f"d{i}" for i in range(80)], enc, EnvConfig(top_k=5, reward_k=5, neighbours=3,
                                                                      full_every=0, drift_bound=1.0))
    enc.move()
    env.step([{"d1": 1}], enc.query(1)[None])
    refreshed = sorted(set(sum(enc.rows[1:], [])))
    assert 0 < len(refreshed) < 80
    exact = knn_graph(env.vectors, 3)
    assert env.graph[refreshed].tolist() == exact[refreshed].tolist()  # recomputed from the fresh vectors


def test_rows_to_refresh_are_the_agreed_ones():
    enc = Drifting(n=100)
    chosen = np.array([1, 2, 3])
    env = RetrievalEnv([f"d{i}" for i in range(100)], enc, EnvConfig(top_k=10, neighbours=0, full_every=0,
                                                                       drift_bound=1.0, fresh_rounds=0),
                       agree=lambda rows: chosen)  # as a broadcast of rank 0's choice would
    assert env.step([{"d5": 1}], enc.query(5)[None]).encodings == 3 and enc.rows[-1] == [1, 2, 3]
