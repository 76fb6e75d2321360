"""Meshes, layout rules and tensor layouts."""
