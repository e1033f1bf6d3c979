"""Input pipelines: Fashion-MNIST, ImageNet 2012 and image folders via TFDS.

Import the submodule you need; this package imports nothing itself, so the
TensorFlow-free ones (`crops`, `normalization`, `config`, `position`) stay
light for `predict` and the checkpoint code:

* `config`: every ``data.*`` key with its default.
* `datasets`: preparing a data set as TFDS ``array_record`` files, its
  splits and class names (`datasets.get_dataset_info`,
  `datasets.resolve_splits`) and random access to its records.
* `pipeline`: the grain training and evaluation iterators
  (`pipeline.create_train_iterator`, `pipeline.create_eval_iterator`).
* `position`: the training input's saved position (what a checkpoint
  holds of the input) and its text form.
* `transforms`, `sampling`, `preprocess`, `crops`, `normalization`: one
  record to one model input; `sampling` holds every random draw.
"""
