"""The population search's pure parts: Pareto dominance and archive update (pareto), parent and
inspiration sampling (selection), ring migration (migration), the bandit over proposers and
operators (bandit) and run budgets (budgets). The loop calls them; the store persists results."""
