"""Self-supervised pretraining (SimCLR, All4One) of a backbone on the poisoned, unlabelled train set."""
