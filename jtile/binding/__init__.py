"""Glue between jtile kernels and JAX: lowering, registration and batching."""
