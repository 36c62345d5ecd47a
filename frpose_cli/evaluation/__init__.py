"""Evaluation: the COCO keypoint protocol over a model (also sharded), error analysis, test-dev files."""
