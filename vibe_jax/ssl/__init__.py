"""Self-supervised pretraining (SimCLR, All4One) on the poisoned, unlabelled training set."""
