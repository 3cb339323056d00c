"""Tracing: runs a kernel body once on symbolic values and records the IR it builds."""
