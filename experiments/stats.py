"""The statistics of an A/B test, on per-arm summaries (n, mean, sample variance): no Django.

One outcome per unit (the experiment's `metric`, a number posted per unit). When every outcome
is 0 or 1 the metric is a proportion: Wilson intervals per arm, the difference with an
unpooled normal interval and a two-proportion z-test (pooled). Otherwise it is a mean: normal
intervals per arm, the difference with a Welch interval and Welch's t-test.

The test has a **fixed horizon**: the number of units per arm is planned up front
(`horizon_for_proportions` / `horizon_for_means`, or given) and the p-value is read once, when
both arms have reached it. Before that the result is *interim*: looking at a p-value again
and again and stopping the first time it dips under alpha inflates the false-positive rate
far beyond alpha, so the page says not to stop early on it. The minimum detectable effect at
the current sample size says how large a difference the test could see now (power 0.8).

The arm summaries are computed by the database (experiments.selectors), so a test with a
million outcomes never loads them into Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

POWER = 0.8
CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class ArmSample:
    """The outcomes of one arm: their count, mean and sample variance (ddof 1; None when n < 2)."""

    n: int
    mean: float | None = None
    variance: float | None = None


def _z(alpha: float) -> float:
    """The two-sided normal quantile: 1.95996... for alpha 0.05."""
    return float(stats.norm.ppf(1 - alpha / 2))


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The Wilson score interval of a proportion (good at small n and near 0 or 1)."""
    if n <= 0:
        raise ValueError("n must be positive")
    z = _z(alpha)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(n: int, mean: float, variance: float, alpha: float = 0.05) -> tuple[float, float]:
    """The normal-approximation interval of a mean: mean ± z·sqrt(variance / n)."""
    half = _z(alpha) * math.sqrt(variance / n)
    return mean - half, mean + half


def two_proportion_ztest(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float] | None:
    """(z, two-sided p) for p2 − p1 with the pooled standard error; None when every outcome is
    the same (the pooled proportion is 0 or 1: no variation to test)."""
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (x2 / n2 - x1 / n1) / se
    return z, float(2 * stats.norm.sf(abs(z)))


def welch_df(n1: int, v1: float, n2: int, v2: float) -> float:
    """Welch–Satterthwaite degrees of freedom."""
    a, b = v1 / n1, v2 / n2
    return (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))


def welch_ttest(
    n1: int, m1: float, v1: float, n2: int, m2: float, v2: float
) -> tuple[float, float, float] | None:
    """(t, df, two-sided p) for m2 − m1 without assuming equal variances; None when both
    variances are 0."""
    se = math.sqrt(v1 / n1 + v2 / n2)
    if se == 0:
        return None
    t = (m2 - m1) / se
    df = welch_df(n1, v1, n2, v2)
    return t, df, float(2 * stats.t.sf(abs(t), df))


def mde_proportions(p: float, n1: int, n2: int, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest absolute difference from a rate `p` a two-sided test at `alpha` detects
    with probability `power` with n1 and n2 units."""
    return (_z(alpha) + float(stats.norm.ppf(power))) * math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))


def mde_means(v1: float, n1: int, v2: float, n2: int, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest difference in means detected with probability `power` (normal approximation)."""
    return (_z(alpha) + float(stats.norm.ppf(power))) * math.sqrt(v1 / n1 + v2 / n2)


def horizon_for_proportions(
    baseline_rate: float, mde: float, alpha: float = 0.05, power: float = POWER
) -> int:
    """Units per arm to detect a change of `mde` (absolute) from `baseline_rate` with `power`:
    n = (z_{1−α/2} + z_power)² · (p1(1−p1) + p2(1−p2)) / mde², p2 = p1 + mde."""
    if not 0 < baseline_rate < 1:
        raise ValueError("baseline_rate must be between 0 and 1")
    if not 0 < mde < 1 - baseline_rate:
        raise ValueError("mde must be positive and baseline_rate + mde below 1")
    p1, p2 = baseline_rate, baseline_rate + mde
    z = _z(alpha) + float(stats.norm.ppf(power))
    return math.ceil(z * z * (p1 * (1 - p1) + p2 * (1 - p2)) / (mde * mde))


def horizon_for_means(sd: float, mde: float, alpha: float = 0.05, power: float = POWER) -> int:
    """Units per arm to detect a difference of `mde` in means with standard deviation `sd`:
    n = 2 · (z_{1−α/2} + z_power)² · sd² / mde²."""
    if not sd > 0:
        raise ValueError("baseline_sd must be positive")
    if not mde > 0:
        raise ValueError("mde must be positive")
    z = _z(alpha) + float(stats.norm.ppf(power))
    return math.ceil(2 * z * z * sd * sd / (mde * mde))


def _arm(sample: ArmSample, binary: bool, alpha: float) -> dict:
    out = {"n": sample.n, "mean": sample.mean, "low": None, "high": None}
    if sample.n >= 1 and sample.mean is not None:
        if binary:
            out["low"], out["high"] = wilson_interval(round(sample.mean * sample.n), sample.n, alpha)
        elif sample.n >= 2 and sample.variance is not None:
            out["low"], out["high"] = mean_interval(sample.n, sample.mean, sample.variance, alpha)
    return out


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def analyse(
    champion: ArmSample,
    challenger: ArmSample,
    *,
    binary: bool,
    alpha: float = 0.05,
    horizon: int,
    power: float = POWER,
) -> dict:
    """Everything the experiment page and API show: per-arm n, mean and interval, the
    difference (challenger − champion) with its interval, the test, whether it is final
    (both arms reached `horizon`), the minimum detectable effect now, and a sentence."""
    result = {
        "kind": "proportion" if binary else "mean",
        "alpha": alpha,
        "level": 1 - alpha,
        "power": power,
        "horizon": horizon,
        "arms": {CHAMPION: _arm(champion, binary, alpha), CHALLENGER: _arm(challenger, binary, alpha)},
        "difference": None,
        "test": None,
        "mde": None,
        "final": False,
        "significant": None,
        "statement": "",
    }
    n1, n2 = champion.n, challenger.n
    result["final"] = n1 >= horizon and n2 >= horizon
    if n1 < 2 or n2 < 2:
        result["statement"] = (
            f"Not enough outcomes to test yet: {n1} for the champion, {n2} for the challenger "
            f"(at least 2 per arm; the plan is {horizon} per arm)."
        )
        return result
    m1, m2 = champion.mean, challenger.mean
    difference = m2 - m1
    if binary:
        x1, x2 = round(m1 * n1), round(m2 * n2)
        se = math.sqrt(m1 * (1 - m1) / n1 + m2 * (1 - m2) / n2)
        half = _z(alpha) * se
        tested = two_proportion_ztest(x1, n1, x2, n2)
        if tested is not None:
            result["test"] = {
                "name": "two-proportion z-test",
                "statistic": tested[0],
                "df": None,
                "p_value": tested[1],
            }
        pooled = (x1 + x2) / (n1 + n2)
        result["mde"] = mde_proportions(pooled, n1, n2, alpha, power) if 0 < pooled < 1 else None
    else:
        v1, v2 = champion.variance or 0.0, challenger.variance or 0.0
        tested = welch_ttest(n1, m1, v1, n2, m2, v2)
        half = 0.0
        if tested is not None:
            t, df, p = tested
            half = float(stats.t.ppf(1 - alpha / 2, df)) * math.sqrt(v1 / n1 + v2 / n2)
            result["test"] = {"name": "Welch's t-test", "statistic": t, "df": df, "p_value": p}
        result["mde"] = mde_means(v1, n1, v2, n2, alpha, power) if v1 + v2 > 0 else None
    result["difference"] = {"value": difference, "low": difference - half, "high": difference + half}
    test = result["test"]
    if test is None:
        result["statement"] = "Every outcome so far is the same value: there is no variation to test."
        return result
    p_value = test["p_value"]
    direction = "higher" if difference > 0 else "lower" if difference < 0 else "the same"
    if not result["final"]:
        result["statement"] = (
            f"Interim: {n1} (champion) and {n2} (challenger) of the {horizon} units per arm planned. "
            f"p = {_fmt(p_value)} now — do not stop early on this p-value; it is final once both "
            f"arms reach {horizon}."
        )
        return result
    result["significant"] = p_value < alpha
    if result["significant"]:
        result["statement"] = (
            f"Final: the challenger's {result['kind']} is {direction} than the champion's by "
            f"{_fmt(abs(difference))} (challenger − champion: {_fmt(difference)}, "
            f"{_fmt(result['difference']['low'])} to {_fmt(result['difference']['high'])}), "
            f"p = {_fmt(p_value)} < {alpha}: significant."
        )
    else:
        result["statement"] = (
            f"Final: no significant difference (p = {_fmt(p_value)} ≥ {alpha}); the test could "
            f"detect a difference of about {_fmt(result['mde'] or 0)} at this sample size."
        )
    return result


def paired_analysis(n: int, mean: float | None, variance: float | None, alpha: float = 0.05) -> dict:
    """A paired comparison on per-unit differences (shadow mode: the challenger's answer or
    error minus the champion's for the same unit): their mean with a t interval and a paired
    t-test of "the mean difference is 0"."""
    out = {"n": n, "mean": mean, "low": None, "high": None, "test": None}
    if n < 2 or mean is None or variance is None:
        return out
    se = math.sqrt(variance / n)
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * se
    out["low"], out["high"] = mean - half, mean + half
    if se > 0:
        t = mean / se
        out["test"] = {
            "name": "paired t-test",
            "statistic": t,
            "df": n - 1,
            "p_value": float(2 * stats.t.sf(abs(t), n - 1)),
        }
    return out


def shadow_analysis(
    agreement: ArmSample,
    champion_error: ArmSample,
    challenger_error: ArmSample,
    error_difference: ArmSample,
    *,
    horizon: int,
    alpha: float = 0.05,
) -> dict:
    """A shadow test: both models answered for the same units, only the champion's answer
    was used. `agreement`: the per-unit difference of the answers (challenger − champion).
    With outcomes: each model's absolute error against the outcome, and their per-unit
    difference (challenger − champion: negative means the challenger is closer), tested with
    a paired t-test, final once `horizon` units have an outcome."""
    result = {
        "alpha": alpha,
        "level": 1 - alpha,
        "horizon": horizon,
        "agreement": paired_analysis(agreement.n, agreement.mean, agreement.variance, alpha),
        "errors": {
            "n": error_difference.n,
            CHAMPION: _arm(champion_error, False, alpha),
            CHALLENGER: _arm(challenger_error, False, alpha),
            "difference": paired_analysis(
                error_difference.n, error_difference.mean, error_difference.variance, alpha
            ),
        },
        "final": error_difference.n >= horizon,
        "significant": None,
        "statement": "",
    }
    n = error_difference.n
    test = result["errors"]["difference"]["test"]
    if n < 2 or test is None:
        result["statement"] = (
            f"{n} unit{'s' if n != 1 else ''} with an outcome and both models' answers so far "
            f"(the plan is {horizon}); no test of the errors yet."
        )
        return result
    p_value, mean = test["p_value"], error_difference.mean
    closer = "the challenger" if mean < 0 else "the champion"
    if not result["final"]:
        result["statement"] = (
            f"Interim: {n} of the {horizon} units planned have an outcome. p = {_fmt(p_value)} now — "
            f"do not stop early on this p-value; it is final once {horizon} units have one."
        )
        return result
    result["significant"] = p_value < alpha
    if result["significant"]:
        result["statement"] = (
            f"Final: {closer}'s answers are closer to the outcomes (mean absolute error "
            f"{_fmt(challenger_error.mean)} for the challenger, {_fmt(champion_error.mean)} for the "
            f"champion), p = {_fmt(p_value)} < {alpha}: significant."
        )
    else:
        result["statement"] = (
            f"Final: no significant difference in the models' absolute errors (p = {_fmt(p_value)} ≥ {alpha})."
        )
    return result
