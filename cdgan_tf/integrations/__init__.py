"""Adapters to other libraries: a Keras layer, the Adversarial Robustness Toolbox."""
