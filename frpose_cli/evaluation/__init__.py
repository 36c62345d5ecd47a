"""Evaluation: the COCO protocol, COCOeval, error analysis, PCK, test-dev files."""
