"""Self-supervised pretraining (SimCLR) of a backbone on the poisoned, unlabelled train set."""
