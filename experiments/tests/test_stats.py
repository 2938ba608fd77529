"""experiments.stats: pure functions, checked against known
numbers and against independent implementations (scipy, statsmodels)."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from experiments import stats
from experiments.stats import ArmSample


def sample(values) -> ArmSample:
    values = np.asarray(values, dtype=float)
    return ArmSample(len(values), float(values.mean()), float(values.var(ddof=1)))


# --------------------------------------------------------------------------- intervals


def test_wilson_interval_known_values():
    low, high = stats.wilson_interval(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    for x, n in [(0, 20), (3, 40), (81, 263), (40, 40)]:
        assert stats.wilson_interval(x, n) == pytest.approx(
            proportion_confint(x, n, method="wilson"), abs=1e-12
        )
    low, high = stats.wilson_interval(0, 20)
    assert low == 0.0 and 0 < high < 0.2  # never below 0, unlike the Wald interval


def test_mean_interval_is_normal_approximation():
    low, high = stats.mean_interval(100, 5.0, 4.0)
    assert low == pytest.approx(5 - 1.959964 * 0.2, abs=1e-6) and high == pytest.approx(
        5 + 1.959964 * 0.2, abs=1e-6
    )


# --------------------------------------------------------------------------- tests


def test_two_proportion_ztest_known_values():
    # 45/100 (champion) vs 60/100 (challenger): pooled 0.525, se 0.07062, z 2.124, p 0.0337.
    z, p = stats.two_proportion_ztest(45, 100, 60, 100)
    assert round(z, 3) == 2.124 and round(p, 4) == 0.0337
    z_ref, p_ref = proportions_ztest([60, 45], [100, 100])
    assert z == pytest.approx(z_ref) and p == pytest.approx(p_ref)
    assert stats.two_proportion_ztest(0, 50, 0, 70) is None  # no variation


def test_welch_ttest_matches_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(10, 2, 40), rng.normal(11, 5, 25)
    sa, sb = sample(a), sample(b)
    t, df, p = stats.welch_ttest(sa.n, sa.mean, sa.variance, sb.n, sb.mean, sb.variance)
    ref = sps.ttest_ind(b, a, equal_var=False)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert df == pytest.approx(ref.df)
    assert stats.welch_ttest(5, 1.0, 0.0, 5, 1.0, 0.0) is None


def test_welch_ttest_known_values():
    # n 10/10, means 20/22, variances 4/9: se = sqrt(0.4 + 0.9) = 1.1402, t = 1.7541,
    # df = 1.69 / (0.4^2/9 + 0.9^2/9) = 15.68, p = 0.0989.
    t, df, p = stats.welch_ttest(10, 20.0, 4.0, 10, 22.0, 9.0)
    assert round(t, 4) == 1.7541 and round(df, 2) == 15.68 and round(p, 4) == 0.0989


def test_paired_analysis_matches_a_one_sample_t_test():
    rng = np.random.default_rng(5)
    d = rng.normal(-0.3, 1.0, 30)
    s = sample(d)
    out = stats.paired_analysis(s.n, s.mean, s.variance)
    ref = sps.ttest_1samp(d, 0.0)
    assert out["test"]["statistic"] == pytest.approx(ref.statistic) and out["test"][
        "p_value"
    ] == pytest.approx(ref.pvalue)
    interval = ref.confidence_interval(0.95)
    assert (out["low"], out["high"]) == pytest.approx((interval.low, interval.high))
    assert stats.paired_analysis(1, 0.5, None)["test"] is None


# --------------------------------------------------------------------------- planning


def test_horizon_for_proportions_known_value():
    # (1.95996 + 0.84162)^2 * (0.1*0.9 + 0.12*0.88) / 0.02^2 = 3838.1 -> 3839 per arm.
    assert stats.horizon_for_proportions(0.10, 0.02) == 3839
    with pytest.raises(ValueError):
        stats.horizon_for_proportions(0.95, 0.1)


def test_horizon_for_means_known_value_and_mde_inverts_it():
    # 2 * 7.8489 * 10^2 / 2^2 = 392.4 -> 393 per arm.
    assert stats.horizon_for_means(10, 2) == 393
    mde = stats.mde_means(100, 393, 100, 393)
    assert 1.99 < mde <= 2.0
    # Four times the units halve the detectable effect.
    assert stats.mde_means(100, 4 * 393, 100, 4 * 393) == pytest.approx(mde / 2)


def test_mde_proportions():
    # (1.95996 + 0.84162) * sqrt(0.1 * 0.9 * 2 / 3839) = 0.019184
    assert stats.mde_proportions(0.1, 3839, 3839) == pytest.approx(0.019184, abs=1e-5)


# --------------------------------------------------------------------------- analyse


def test_analyse_proportions_interim_then_final():
    champion, challenger = ArmSample(100, 0.45), ArmSample(100, 0.60)
    interim = stats.analyse(champion, challenger, binary=True, horizon=200)
    assert interim["kind"] == "proportion" and interim["test"]["name"] == "two-proportion z-test"
    assert interim["test"]["p_value"] == pytest.approx(0.0337, abs=1e-4)
    assert not interim["final"] and interim["significant"] is None
    assert "Interim" in interim["statement"] and "do not stop early" in interim["statement"]
    assert interim["arms"]["challenger"]["low"] == pytest.approx(
        proportion_confint(60, 100, method="wilson")[0]
    )
    d = interim["difference"]
    se = math.sqrt(0.45 * 0.55 / 100 + 0.6 * 0.4 / 100)
    assert d["value"] == pytest.approx(0.15) and d["low"] == pytest.approx(0.15 - 1.959964 * se, abs=1e-6)
    final = stats.analyse(champion, challenger, binary=True, horizon=100)
    assert final["final"] and final["significant"] is True
    assert final["statement"].startswith("Final") and "higher" in final["statement"]
    assert final["mde"] == pytest.approx(stats.mde_proportions(0.525, 100, 100))
    lower = stats.analyse(challenger, champion, binary=True, horizon=100)
    # "lower by 0.15", the signed difference named as such: never "lower by -0.15"
    assert "lower than the champion's by 0.15 (challenger − champion: -0.15" in lower["statement"]


def test_analyse_means_uses_welch_and_reports_no_difference():
    rng = np.random.default_rng(11)
    a, b = sample(rng.normal(5, 1, 60)), sample(rng.normal(5, 1, 60))
    out = stats.analyse(a, b, binary=False, horizon=50)
    ref = sps.ttest_ind_from_stats(
        b.mean, math.sqrt(b.variance), b.n, a.mean, math.sqrt(a.variance), a.n, equal_var=False
    )
    assert out["test"]["name"] == "Welch's t-test" and out["test"]["p_value"] == pytest.approx(ref.pvalue)
    assert out["final"] and out["significant"] is False and "no significant difference" in out["statement"]
    assert out["arms"]["champion"]["low"] < a.mean < out["arms"]["champion"]["high"]
    d = out["difference"]
    assert d["low"] < d["value"] < d["high"]


def test_analyse_without_enough_outcomes():
    out = stats.analyse(ArmSample(3, 0.5, 0.3), ArmSample(1, 1.0), binary=True, horizon=10)
    assert out["test"] is None and out["difference"] is None and "Not enough outcomes" in out["statement"]
