"""Partitions this broker hosts: their behaviour (partition.py) and their manager (manager.py)."""
