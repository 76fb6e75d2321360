"""Lowering named ops to per-processor slices and collectives, and the executors."""
