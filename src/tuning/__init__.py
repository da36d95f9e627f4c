"""Tuning: Optuna studies driven by Hydra multirun (the sweeper plugin in hydra_plugins/)."""

import optuna

# Optuna gives its logger a handler of its own at level INFO when it is imported, over
# Hydra's logging config: a sweep printed "[I ...] A new study created in RDB with name: svm".
# Every module here imports Optuna, and the sweeper and the pipeline import them, so this
# runs in each process that drives or runs a trial; warnings and errors still show.
optuna.logging.set_verbosity(optuna.logging.WARNING)
