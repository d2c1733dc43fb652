"""The evaluator: tasks, the in-sandbox worker, host statistics and the ensemble acceptance test."""
