"""Kafka wire protocol: batch headers, records and compression codecs."""
