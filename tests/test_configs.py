"""configs/*.py: their args, their keys, and no file read while loading."""

import sys
import threading

import numpy as np
from PIL import Image
import pytest

from configs import fashion_mnist
from configs import image_folder
from configs import imagenet
from inception_jax.data import datasets

CONFIGS = (fashion_mnist, imagenet, image_folder)

# Python's audit hooks report every file opened and folder listed; a hook
# cannot be removed, so it records only while a test asks it to, and only
# on that test's thread.
_FILE_EVENTS = ('open', 'os.listdir', 'os.scandir')
_recording = {}


def _audit(event, args):
  if (event in _FILE_EVENTS
      and _recording.get('thread') == threading.get_ident()):
    _recording['events'].append((event, args[0] if args else None))


sys.addaudithook(_audit)


def _files_read_by(function, *args):
  _recording.update(thread=threading.get_ident(), events=[])
  try:
    result = function(*args)
  finally:
    events = _recording.pop('events')
    _recording.pop('thread')
  return result, events


def _flat_keys(config, prefix=''):
  keys = set()
  for key, value in config.items():
    if hasattr(value, 'items'):
      keys |= _flat_keys(value, f'{prefix}{key}.')
    else:
      keys.add(prefix + key)
  return keys


def test_loading_a_config_reads_no_file(tmp_path):
  small = tmp_path / 'small' / 'train' / 'cat'
  small.mkdir(parents=True)
  Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(small / '0.png')
  root = tmp_path / 'small'
  cases = [(fashion_mnist, None), (fashion_mnist, 'long,runlocal'),
           (imagenet, None), (imagenet, 'recipe=caffe_quick,runlocal'),
           (imagenet, 'variant=torchvision'),
           (image_folder, f'root={root}'),
           (image_folder, f'root={tmp_path / "nothing"},size=48,epochs=3')]
  for module, arg in cases:
    config, events = _files_read_by(module.get_config, arg)
    assert events == [], (module.__name__, arg)
  # The hook does see the size probe, where it now runs.
  resolved, events = _files_read_by(datasets.resolve_config,
                                    image_folder.get_config(f'root={root}'))
  assert resolved.data.image_size == 32
  assert any(str(small / '0.png') == str(path) for _, path in events)


def test_every_config_has_the_same_keys(tmp_path):
  root = tmp_path / 'photos'
  keys = [_flat_keys(fashion_mnist.get_config()),
          _flat_keys(imagenet.get_config('recipe=caffe_quick')),
          _flat_keys(datasets.resolve_config(
              image_folder.get_config(f'root={root}')))]
  assert keys[0] == keys[1] == keys[2]
  assert 'optimizer.lr' in keys[0] and 'data.image_size' in keys[0]


def test_args_and_their_errors():
  c = image_folder.get_config('root=/x,size=48,epochs=3,runlocal,aux=false')
  assert (c.data.root, c.num_epochs, c.model.aux) == ('/x', 3.0, False)
  assert c.total_steps == 6  # runlocal
  assert fashion_mnist.get_config('long=false').num_epochs == 5
  for module in CONFIGS:
    with pytest.raises(ValueError, match=r"unknown config arg 'depth'; "
                       r'valid args are module, aux, norm, variant'):
      module.get_config('depth=2')
    with pytest.raises(ValueError, match=r'not one of True\|False'):
      module.get_config('runlocal=yes')
  with pytest.raises(ValueError, match=r"size='x' is not an integer"):
    image_folder.get_config('size=x')
  with pytest.raises(ValueError, match='root needs a value: root=<str>'):
    image_folder.get_config('root')
  with pytest.raises(ValueError, match=r'recipe=.huge. is not one of '
                     r'paper\|caffe_quick'):
    imagenet.get_config('recipe=huge')


def test_auto_worker_count_leaves_the_step_its_cores():
  from inception_jax.data import config as data_config  # pylint: disable=g-import-not-at-top
  auto = data_config.AUTO_WORKERS
  assert imagenet.get_config().data.worker_count == auto
  assert imagenet.get_config('runlocal').data.worker_count == 0
  # A CPU-only step computes on half the cores; an accelerator's loop needs
  # one.
  assert data_config.resolve_worker_count(auto, 'cpu', cores=16)[0] == 8
  count, why = data_config.resolve_worker_count(auto, 'tpu', cores=240)
  assert count == 239 and '240 usable cores' in why
  assert data_config.resolve_worker_count(auto, 'cpu', cores=1)[0] == 0
  assert data_config.resolve_worker_count(3, 'tpu', cores=240)[0] == 3
  with pytest.raises(ValueError, match='data.worker_count=-2'):
    data_config.resolve_worker_count(-2, 'cpu')
