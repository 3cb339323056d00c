"""A GPT-style decoder written twice, on `jtile.ops` and in `jax.numpy`, with its corpus and
training step; `examples/train_gpt.py` trains both side by side."""
