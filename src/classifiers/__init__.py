"""Classifiers on top of the backbone: a linear SVM on its features, or a refined network."""
