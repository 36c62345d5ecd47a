"""Inference over many images: ``frpose predict`` (sources → boxes → crops → keypoints → run folder),
person detectors, overlays, shards and their merge."""
