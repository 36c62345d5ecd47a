"""Metrics: COCO OKS-AP through COCOeval (with the results and ground-truth files it scores),
rescoring and OKS-NMS, PCK."""
