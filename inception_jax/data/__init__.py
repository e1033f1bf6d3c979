"""Input pipelines: Fashion-MNIST, ImageNet 2012 and image folders via TFDS."""
from inception_jax.data.config import default_config
from inception_jax.data.datasets import DatasetInfo, get_dataset_info
from inception_jax.data.pipeline import (EvalIterator, create_eval_iterator,
                                         create_train_iterator, shard_bounds)
