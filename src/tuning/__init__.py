"""Tuning: Optuna studies driven by Hydra multirun (the sweeper plugin in hydra_plugins/)."""
