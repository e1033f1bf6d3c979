"""Test-wide settings.

Every test process sees 8 simulated CPU devices, so the sharded code paths
(mesh, batch sharding, padded evaluation) are exercised on a machine with one
CPU. This must happen before JAX is imported anywhere.
"""
import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# torchvision pulls in triton, whose bundled LLVM crashes the process
# (segmentation fault) when TensorFlow's is already loaded; TensorFlow loaded
# after it is fine. Test modules import both, in an order that depends on
# collection, so fix the order here.
import torchvision  # pylint: disable=unused-import,wrong-import-position
