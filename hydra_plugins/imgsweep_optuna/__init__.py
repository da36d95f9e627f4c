"""imgsweep's Optuna sweeper for Hydra multirun (`hydra/sweeper=imgsweep_optuna`)."""
