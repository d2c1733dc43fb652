"""Pure, tested implementations of the results in docs/theory.md (T1-T6)."""

from theory.acceptance import (
    acceptance_threshold,
    accepts,
    conditional_power,
    crossing_probabilities,
    predicted_improvement,
    search_cost,
    sequential_bounds,
    spent_alpha,
    variance_stable_threshold,
)
from theory.cross_entropy import (
    elite_probability_lower_bound,
    fit_token_error_rate,
    validity_probability,
)
from theory.edgenes import expected_updated_edges, speedup_over_darts_ensembling
from theory.ensemble import (
    KroghVedelsby,
    diversity,
    diversity_from_two_instances,
    ensemble_error,
    homogeneous_ambiguity,
    krogh_vedelsby,
)
from theory.errors import TheoryInputError
from theory.feature_bagging import (
    base_diversity_gain,
    dropout_gain,
    optimal_ensemble_error,
    optimal_fraction,
    u_curve_error,
)
from theory.proxy import (
    pearson_from_snr,
    predicted_rank_correlation,
    signal_to_noise,
    spearman_from_pearson,
)
from theory.rl import advantages, discounted_returns

__all__ = [
    "KroghVedelsby",
    "TheoryInputError",
    "acceptance_threshold",
    "accepts",
    "conditional_power",
    "crossing_probabilities",
    "advantages",
    "base_diversity_gain",
    "discounted_returns",
    "diversity",
    "diversity_from_two_instances",
    "dropout_gain",
    "elite_probability_lower_bound",
    "ensemble_error",
    "expected_updated_edges",
    "fit_token_error_rate",
    "homogeneous_ambiguity",
    "krogh_vedelsby",
    "optimal_ensemble_error",
    "optimal_fraction",
    "pearson_from_snr",
    "predicted_improvement",
    "predicted_rank_correlation",
    "search_cost",
    "sequential_bounds",
    "spent_alpha",
    "signal_to_noise",
    "spearman_from_pearson",
    "u_curve_error",
    "validity_probability",
]
