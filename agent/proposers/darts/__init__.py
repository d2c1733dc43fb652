"""DARTS and EdgeNES (seed 001): search space, first-order DARTS, the EdgeNES hypernetwork,
the seed's baselines, ensemble selection, and the `darts`/`edgenes` proposers."""
