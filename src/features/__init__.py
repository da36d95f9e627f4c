"""Features: the ResNet backbone, batched featurisation, and the feature cache."""
