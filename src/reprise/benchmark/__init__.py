"""Reproducible comparisons: train several models under one budget and score them the same way."""
