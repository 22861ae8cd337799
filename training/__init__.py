"""Offline training and evaluation for ser_ros: corpora in, artifacts, metrics and plots out."""
