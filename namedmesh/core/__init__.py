"""The named core: dims, shapes, the named Tensor and its ops."""
