"""The experiment readout checked against an independent computation.

Three endpoints over the demo fraud model (champion v1, challenger v2, split
50/50 by a sticky user id, so every run sees the same data) measure accuracy, conversion and a mean. The test sends
calls, remembers what each arm answered, posts ground truth in batches to
``/v2/feedback`` and then recomputes every number of
``GET /admin/experiments/{endpoint}`` from its own records:

- counts and metric values exactly (a proportion is x / n, a mean is
  ``math.fsum(xs) / n``);
- intervals and p-values to 1e-9 relative with statsmodels
  (``proportion_confint(method="wilson")``, ``proportions_ztest``) and scipy
  (``t.interval``, ``ttest_ind(equal_var=False)``, ``chisquare``, ``norm``);
- the always-valid p-value with the mSPRT written out here (normal mixing
  distribution, Johari et al. 2017), evaluated after each feedback batch.
"""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest
import requests
from scipy import stats
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from conftest import run_podium

MIN_SAMPLES = 30
ALPHA = 0.05
CALLS = 240
BATCHES = 4

CONFIG = """
[[endpoint]]
name = "fraud-acc"
model = "fraud"
sticky_key = {{ header = "x-user-id" }}
arms = [{{ alias = "champion", weight = 50 }}, {{ alias = "challenger", weight = 50 }}]
[endpoint.readout]
metric = "accuracy"
prediction_output = "label"
min_samples = {min}
alpha = {alpha}

[[endpoint]]
name = "fraud-conv"
model = "fraud"
sticky_key = {{ header = "x-user-id" }}
arms = [{{ alias = "champion", weight = 50 }}, {{ alias = "challenger", weight = 50 }}]
[endpoint.readout]
metric = "conversion"
min_samples = {min}
alpha = {alpha}

[[endpoint]]
name = "fraud-mean"
model = "fraud"
sticky_key = {{ header = "x-user-id" }}
arms = [{{ alias = "champion", weight = 50 }}, {{ alias = "challenger", weight = 50 }}]
[endpoint.readout]
metric = "mean"
min_samples = {min}
alpha = {alpha}
""".format(min=MIN_SAMPLES, alpha=ALPHA)


def close(got, want, what):
    assert got is not None, f"{what}: the readout has null, expected {want!r}"
    assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15), (
        f"{what}: readout {got!r}, independent {want!r}"
    )


def call(session, base, endpoint, rng, user):
    """One call of `user` with a random fraud row: (request id, arm, predicted label)."""
    row = rng.normal(size=30).astype(np.float32)
    body = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row.tolist()}]}
    headers = {"x-user-id": user}
    r = session.post(f"{base}/v2/models/{endpoint}/infer", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    return r.headers["x-request-id"], r.headers["x-podium-arm"], out["label"]["data"][0]


def msprt_p(previous, arm, base, proportion):
    """One mSPRT evaluation: min(previous, 1 / Λ), with the mixing variance
    τ² = (per-unit variance of the difference) / MIN_SAMPLES."""
    n1, n2 = len(arm), len(base)
    if n1 < MIN_SAMPLES or n2 < MIN_SAMPLES:
        return previous
    d = np.mean(arm) - np.mean(base)
    if proportion:
        pooled = (sum(arm) + sum(base)) / (n1 + n2)
        v = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
        tau2 = 2 * pooled * (1 - pooled) / MIN_SAMPLES
    else:
        s1, s2 = np.var(arm, ddof=1), np.var(base, ddof=1)
        v = s1 / n1 + s2 / n2
        tau2 = (s1 + s2) / MIN_SAMPLES
    if v <= 0 or tau2 <= 0:
        return previous
    z = d / math.sqrt(v)
    ratio = math.sqrt(v / (v + tau2)) * math.exp(z * z / 2 * tau2 / (v + tau2))
    return min(previous, 1 / ratio, 1.0)


def check_readout(readout, calls, outcomes, always_valid, metric):
    proportion = metric != "mean"
    arms = {a["arm"]: a for a in readout["arms"]}
    assert list(arms) == ["champion", "challenger"]
    z = stats.norm.ppf(1 - ALPHA / 2)
    for name, a in arms.items():
        xs = outcomes[name]
        assert a["requests"] == calls[name] and a["errors"] == 0
        assert a["feedback"] == len(xs)
        assert a["weight"] == 50
        assert a["version"] == {"champion": 1, "challenger": 2}[name]
        lat = a["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"], lat
        m = a["metric"]
        assert m["name"] == metric
        if proportion:
            assert m["value"] == sum(xs) / len(xs)
            low, high = proportion_confint(int(sum(xs)), len(xs), alpha=ALPHA, method="wilson")
        else:
            assert m["value"] == math.fsum(xs) / len(xs)
            sem = stats.sem(xs)
            low, high = stats.t.interval(1 - ALPHA, len(xs) - 1, loc=np.mean(xs), scale=sem)
        close(m["ci_low"], low, f"{name} ci_low")
        close(m["ci_high"], high, f"{name} ci_high")

    observed = [calls["champion"], calls["challenger"]]
    total = sum(observed)
    chi2, p = stats.chisquare(observed, [total / 2, total / 2])
    if chi2 == 0:
        assert readout["srm"]["p_value"] == 1.0
    else:
        close(readout["srm"]["chi_square"], chi2, "srm chi-square")
        close(readout["srm"]["p_value"], p, "srm p-value")
    assert readout["srm"]["ok"] == (p >= 0.001)

    (c,) = readout["comparisons"]
    assert c["arm"] == "challenger" and c["baseline"] == "champion"
    arm, base = outcomes["challenger"], outcomes["champion"]
    n1, n2 = len(arm), len(base)
    diff = (sum(arm) / n1 - sum(base) / n2) if proportion else (math.fsum(arm) / n1 - math.fsum(base) / n2)
    close(c["diff"], diff, "diff")
    if proportion:
        _, p_value = proportions_ztest([sum(arm), sum(base)], [n1, n2])
        p1, p2 = sum(arm) / n1, sum(base) / n2
        se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
        assert c["test"] == "pooled_two_proportion_z"
    else:
        p_value = stats.ttest_ind(arm, base, equal_var=False).pvalue
        se = math.sqrt(np.var(arm, ddof=1) / n1 + np.var(base, ddof=1) / n2)
        assert c["test"] == "welch_t"
    close(c["p_value"], p_value, "p-value")
    close(c["ci_low"], diff - z * se, "diff ci_low")
    close(c["ci_high"], diff + z * se, "diff ci_high")
    close(c["always_valid_p_value"], always_valid, "always-valid p-value")

    if n1 < MIN_SAMPLES or n2 < MIN_SAMPLES:
        want = "insufficient_data"
    elif not readout["srm"]["ok"]:
        want = "srm_failed"
    elif always_valid < ALPHA:
        want = "better" if diff > 0 else "worse"
    else:
        want = "no_difference_yet"
    assert c["decision"] == want
    return c["decision"]


@pytest.mark.parametrize(
    "endpoint, metric",
    [("fraud-acc", "accuracy"), ("fraud-conv", "conversion"), ("fraud-mean", "mean")],
)
def test_the_readout_matches_scipy_and_statsmodels(registry, tmp_path, endpoint, metric):
    config = tmp_path / "podium.toml"
    config.write_text(CONFIG)
    rng = np.random.default_rng(20261127)
    with run_podium(registry, tmp_path, "--config", str(config)) as srv, requests.Session() as session:
        base = f"http://{srv.url}"
        # Users are assigned to arms by a hash of their id, so every run sees
        # the same split and the same data.
        made = [call(session, base, endpoint, rng, f"user-{i}") for i in range(CALLS)]
        calls = {arm: sum(1 for _, a, _ in made if a == arm) for arm in ("champion", "challenger")}

        # Ground truth: for accuracy a class, for conversion a 0/1 outcome
        # (the challenger converts more), for the mean a number (higher on
        # the challenger). A tenth of the calls never get a label.
        feedback = []
        for request_id, arm, predicted in made:
            if rng.random() < 0.1:
                continue
            if metric == "accuracy":
                label = int(rng.random() < 0.5)
            elif metric == "conversion":
                label = bool(rng.random() < (0.6 if arm == "challenger" else 0.15))
            else:
                label = float(rng.normal(1.0 if arm == "challenger" else 0.0, 1.0))
            feedback.append((request_id, arm, predicted, label))

        outcomes = {"champion": [], "challenger": []}
        always_valid = 1.0
        for k in range(BATCHES):
            batch = feedback[k::BATCHES]
            items = [{"request_id": rid, "label": label} for rid, _, _, label in batch]
            # One unknown call per batch: counted, never joined.
            items.append({"request_id": str(uuid.uuid4()), "label": 1})
            r = session.post(f"{base}/v2/feedback", json={"feedback": items}, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json() == {"accepted": len(items), "matched": len(batch), "duplicates": 0, "unmatched": 1}
            for _, arm, predicted, label in batch:
                if metric == "accuracy":
                    outcomes[arm].append(1.0 if label == predicted else 0.0)
                else:
                    outcomes[arm].append(float(label))
            always_valid = msprt_p(always_valid, outcomes["challenger"], outcomes["champion"], metric != "mean")

        readout = requests.get(f"{base}/admin/experiments/{endpoint}", timeout=30).json()
        assert readout["endpoint"] == endpoint and readout["metric"] == metric
        decision = check_readout(readout, calls, outcomes, always_valid, metric)
        if metric in ("conversion", "mean"):
            # The challenger is better by construction; the data show it.
            assert decision == "better", readout
