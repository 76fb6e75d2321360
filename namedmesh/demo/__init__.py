"""The demo: a small character language model with MoE2D feed-forward layers."""
