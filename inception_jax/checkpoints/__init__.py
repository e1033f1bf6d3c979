"""Checkpoints: written by the trainer, read anywhere.

Import the module you need; this package imports nothing itself, so
`loader` stays free of the trainer's dependencies:

* `layout`: ``DIR/checkpoints/<step>/`` and the one rule for which step is
  the newest whole one (`layout.complete_steps`), copies without Orbax's
  commit markers included.
* `manager`: the trainer's Orbax manager, save and `restore_or_init`, and
  the run's clock.
* `loader`: `load(path)`, exposed as `inception_jax.load`: any checkpoint
  onto any number of devices.
* `params`: the parameters-only format (exports, converted torchvision
  weights).
* `finetune`: ``--config.init_from``, a fresh run started from any
  checkpoint `loader.load` reads.
"""
