"""Training: the generic trainer, optimizers, checkpoints and metric writers."""
