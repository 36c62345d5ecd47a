"""Data: COCO keypoint files, images and video sources, crop geometry, heatmap codecs."""
