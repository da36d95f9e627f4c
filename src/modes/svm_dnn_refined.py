"""svm_dnn_refined (the original's "svmDnnRefined"): refined as dnn, then the linear SVM on
the refined network's pooled features (computed every run: they depend on the training)."""

from src.modes.job import Fitted, Job, Network, features
from src.modes.svm import fit_on_features


def fit(job: Job, network: Network, settings) -> Fitted:
    featurizer = network.model.featurizer
    found, rate = features(job, featurizer, None, "featurising (refined)")
    fitted = fit_on_features(job, featurizer, found, settings)
    fitted.training, fitted.featurize_images_per_second = network.training, rate
    return fitted
