"""docs/theory.md T6.6: proxy reliability from the signal-to-noise ratio (seed 003)."""

from __future__ import annotations

import math
import numbers

from theory import _checks as chk
from theory.errors import TheoryInputError


def signal_to_noise(var_arch: float, var_noise: float) -> float:
    """docs/theory.md T6.6: SNR = sigma^2_arch / sigma^2_noise (inf when the proxy has no noise)."""
    arch = chk.nonneg(var_arch, "var_arch")
    noise = chk.nonneg(var_noise, "var_noise")
    if noise == 0.0:
        if arch == 0.0:
            raise TheoryInputError("var_arch and var_noise are both 0: the SNR is undefined")
        return math.inf
    return arch / noise


def pearson_from_snr(snr: float) -> float:
    """docs/theory.md T6.6: rho_P = sqrt(SNR / (1 + SNR)) for proxy = quality + independent noise."""
    if isinstance(snr, numbers.Real) and not isinstance(snr, bool) and snr == math.inf:
        return 1.0  # noiseless proxy: the limit of the formula
    value = chk.nonneg(snr, "snr")
    return math.sqrt(value / (1.0 + value))


def spearman_from_pearson(rho_p: float) -> float:
    """docs/theory.md T6.6: rho_S = (6/pi) asin(rho_P / 2) under joint normality."""
    rho = chk.correlation(rho_p, "rho_p")
    return 6.0 / math.pi * math.asin(rho / 2.0)


def predicted_rank_correlation(var_arch: float, var_noise: float) -> float:
    """docs/theory.md T6.6: Spearman correlation of proxy and true quality predicted from the SNR."""
    return spearman_from_pearson(pearson_from_snr(signal_to_noise(var_arch, var_noise)))
