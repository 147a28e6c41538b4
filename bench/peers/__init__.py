"""Servers the serving benchmark compares with ours (bench/serving.py); not shipped in the image."""
