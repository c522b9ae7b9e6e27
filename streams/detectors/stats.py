"""Tail probabilities the failure-spike rule tests against: binomial and beta-binomial,
in log space. Pure."""

from __future__ import annotations

import math


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), computed in log space (exact up to rounding).

    Sums the terms from the side where they decrease away from ``k``, so it needs few
    terms; returns values down to the smallest positive float (smaller ones are 0.0)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    odds = p / (1.0 - p)
    lgn = math.lgamma(n + 1)

    def log_pmf(i: int) -> float:
        return lgn - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq

    mode = math.floor((n + 1) * p)
    if k > mode:
        # upper tail: terms decrease from k upwards
        total = term = 1.0
        i = k
        while i < n:
            term *= (n - i) / (i + 1) * odds
            total += term
            i += 1
            if term <= total * 1e-17:
                break
        log_tail = log_pmf(k) + math.log(total)
        return min(1.0, math.exp(log_tail)) if log_tail > -745 else 0.0
    # lower tail P(X <= k - 1): terms decrease from k - 1 downwards
    total = term = 1.0
    i = k - 1
    while i > 0:
        term *= i / (n - i + 1) / odds
        total += term
        i -= 1
        if term <= total * 1e-17:
            break
    lower = math.exp(log_pmf(k - 1)) * total
    return min(1.0, max(0.0, 1.0 - lower))


def beta_binomial_tail(k: int, n: int, a: float, b: float) -> float:
    """P(X >= k) for X ~ BetaBinomial(n, a, b): failures among n runs when the failure rate
    itself is only known as Beta(a, b) (e.g. the posterior of a baseline). Heavier-tailed
    than the binomial with p = a / (a + b); equal to it as a + b grows."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if a <= 0.0:
        return 0.0
    if b <= 0.0:
        return 1.0
    lg = math.lgamma
    log_term = (lg(n + 1) - lg(k + 1) - lg(n - k + 1) + lg(k + a) + lg(n - k + b) - lg(n + a + b)
                + lg(a + b) - lg(a) - lg(b))
    total = term = 1.0
    i = k
    while i < n:
        ratio = (n - i) / (i + 1) * (i + a) / (n - i - 1 + b)
        term *= ratio
        total += term
        i += 1
        if ratio < 1.0 and term <= total * 1e-17:
            break
    log_tail = log_term + math.log(total)
    return min(1.0, math.exp(log_tail)) if log_tail > -745 else 0.0
