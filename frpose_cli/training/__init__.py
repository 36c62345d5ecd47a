"""Training: the loop, its set-up and records, the loss."""
