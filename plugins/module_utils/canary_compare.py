# Copyright: gradual.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The canary_compare gate's statistics: the hosts a stage's first batch changed (the canary)
against the hosts it has not changed yet (the baseline), under the same load at the same time.

Latency: one-sided Mann-Whitney U (is the canary stochastically slower?), fail only when
p < alpha AND the median difference exceeds the tolerance (a significant but harmless 0.2 ms is
no failure). Errors: one-sided Fisher's exact test on the 2x2 table of errors and answers.
A comparison that cannot be made (no baseline, a side that answered nothing, too few samples) is
inconclusive, never a pass.

Pure Python plus scipy, no Ansible import: unit-tested without a host.
"""
from __future__ import annotations

import statistics

DEFAULTS = {"alpha": 0.05, "max_median_increase_ms": 5.0, "max_median_ratio": None, "min_samples": 20}


def check_settings(alpha, max_median_increase_ms, max_median_ratio=None, min_samples=20) -> None:
    """Raise ValueError naming the bad setting."""
    if not 0 < float(alpha) < 1:
        raise ValueError("alpha=%r must be between 0 and 1 (exclusive)" % (alpha,))
    if float(max_median_increase_ms) < 0:
        raise ValueError("max_median_increase_ms=%r must be >= 0" % (max_median_increase_ms,))
    if max_median_ratio is not None and float(max_median_ratio) < 1:
        raise ValueError("max_median_ratio=%r must be >= 1 (the canary's median over the baseline's)"
                         % (max_median_ratio,))
    if int(min_samples) < 3:
        raise ValueError("min_samples=%r must be >= 3" % (min_samples,))


def _inconclusive(reason: str, figures: dict) -> dict:
    return {"passed": False, "inconclusive": True, "reason": reason, "figures": figures}


def compare(canary_ms: list, baseline_ms: list, canary_errors: int = 0, baseline_errors: int = 0,
            alpha: float = 0.05, max_median_increase_ms: float = 5.0, max_median_ratio=None,
            min_samples: int = 20) -> dict:
    """Verdict {passed, inconclusive, reason, figures} of the canary's latencies (ms, one per
    request sent, as run_load measures them) and error count (of those requests, plus any that
    could not be sent) against the baseline's."""
    from scipy import stats  # imported here: a missing scipy is reported by the caller

    check_settings(alpha, max_median_increase_ms, max_median_ratio, min_samples)
    canary_ms = [float(x) for x in canary_ms or []]
    baseline_ms = [float(x) for x in baseline_ms or []]
    n1, n2 = len(canary_ms), len(baseline_ms)
    figures = {"canary_n": n1, "baseline_n": n2, "canary_errors": int(canary_errors),
               "baseline_errors": int(baseline_errors), "alpha": alpha,
               "max_median_increase_ms": max_median_increase_ms, "max_median_ratio": max_median_ratio}

    # errors first: a canary that fails requests is judged even when its few answers were fast
    c_total, b_total = max(n1, int(canary_errors)), max(n2, int(baseline_errors))
    c_ok, b_ok = c_total - int(canary_errors), b_total - int(baseline_errors)
    error_p = None
    if c_total and b_total:
        error_p = float(stats.fisher_exact([[int(canary_errors), c_ok], [int(baseline_errors), b_ok]],
                                           alternative="greater").pvalue)
        figures.update(canary_error_rate=round(100.0 * int(canary_errors) / c_total, 3),
                       baseline_error_rate=round(100.0 * int(baseline_errors) / b_total, 3),
                       error_p=round(error_p, 6))
    else:
        figures["error_p"] = None
    if not b_total:
        return _inconclusive("no baseline: every app host of the stage is changed, or the baseline "
                             "sent no request", figures)
    if not c_total:
        return _inconclusive("the canary sent no request", figures)
    if error_p is not None and error_p < alpha:
        return {"passed": False, "inconclusive": False, "figures": figures,
                "reason": "canary errors %d/%d against baseline %d/%d (Fisher one-sided p=%.4g < alpha=%g)"
                          % (int(canary_errors), c_total, int(baseline_errors), b_total, error_p, alpha)}
    if not c_ok or not b_ok:
        return _inconclusive("the %s answered nothing" % ("canary" if not c_ok else "baseline"), figures)
    if min(n1, n2) < int(min_samples):
        return _inconclusive("too few answers to compare: canary %d, baseline %d (min_samples %d)"
                             % (n1, n2, int(min_samples)), figures)

    test = stats.mannwhitneyu(canary_ms, baseline_ms, alternative="greater")
    c_med, b_med = statistics.median(canary_ms), statistics.median(baseline_ms)
    diff = c_med - b_med
    ratio = c_med / b_med if b_med > 0 else None
    p = float(test.pvalue)
    figures.update(canary_median_ms=round(c_med, 3), baseline_median_ms=round(b_med, 3),
                   median_diff_ms=round(diff, 3), median_ratio=round(ratio, 3) if ratio is not None else None,
                   u=float(test.statistic),
                   # common-language effect size: P(canary > baseline) (+ half the ties)
                   effect_size=round(float(test.statistic) / (n1 * n2), 4), p=round(p, 6))
    too_slow = diff > float(max_median_increase_ms)
    if max_median_ratio is not None and ratio is not None:
        too_slow = too_slow and ratio > float(max_median_ratio)
    if p < alpha and too_slow:
        return {"passed": False, "inconclusive": False, "figures": figures,
                "reason": "canary slower: median %.2f ms against baseline %.2f ms (+%.2f ms, x%s; "
                          "Mann-Whitney one-sided p=%.4g < alpha=%g)"
                          % (c_med, b_med, diff, "%.2f" % ratio if ratio else "?", p, alpha)}
    return {"passed": True, "inconclusive": False, "figures": figures,
            "reason": "canary median %.2f ms, baseline %.2f ms (+%.2f ms), p=%.4g; errors %d against %d"
                      % (c_med, b_med, diff, p, int(canary_errors), int(baseline_errors))}
