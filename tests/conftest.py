"""Test setup: 8 logical CPU devices before TensorFlow starts, quiet logs."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

import namedmesh  # noqa: E402

namedmesh.configure_cpu_devices(8)
tf.get_logger().setLevel("ERROR")
