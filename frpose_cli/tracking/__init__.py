"""People across frames: the tracker, keypoint smoothing, and the PoseTrack format (docs/tracking.md)."""
