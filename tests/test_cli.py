"""The command-line contract, tested once for every command: a mistake in
the input is one line on stderr, ``error: ...``, exit status 1, no traceback;
paths are taken relative to the current directory."""

import pytest

from inception_jax import cli
from inception_jax import paths
from tests.helpers import TINY_CONFIG, last_error_line, run_main


@pytest.mark.parametrize('args, message', [
    ([f'--config={TINY_CONFIG}', '--config.nope=1'],
     '--config.nope: no such config key'),
    ([f'--config={TINY_CONFIG}', '--config.data.nope=1'],
     '--config.data.nope: no such config key'),
    ([f'--config={TINY_CONFIG}', '--config.batch_size=sixteen'],
     'batch_size=sixteen'),
    ([f'--config={TINY_CONFIG},norm=layer'],
     "norm='layer' is not one of lrn|batchnorm|none"),
    ([], '--config must have a value'),
    ([f'--config={TINY_CONFIG}', 'stray'], 'unexpected arguments: stray'),
    # Raised by the trainer, before anything compiles.
    ([f'--config={TINY_CONFIG}', '--config.model.num_classes=7'],
     'model.num_classes=7 but the data set has 10 classes'),
    # LRN at a unit input scale would do nothing (the config arg sets both).
    ([f'--config={TINY_CONFIG}', '--config.model.norm=lrn'],
     "model.norm=lrn with data.normalization='minus_one_one'"),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path, args, message):
  result = run_main(args + [f'--workdir={tmp_path}/run'], timeout=300)
  assert message in last_error_line(result)


def test_paths_are_resolved_once_where_they_enter(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert paths.resolve('runs/x') == str(tmp_path / 'runs' / 'x')
  assert paths.resolve('~/data') == str(tmp_path / 'home' / 'data')
  assert paths.resolve('gs://bucket/run') == 'gs://bucket/run'
  assert paths.resolve(None) is None
  assert cli._PathParser().parse('a/../b') == str(tmp_path / 'b')  # pylint: disable=protected-access

  from configs import fashion_mnist  # pylint: disable=g-import-not-at-top
  config = fashion_mnist.get_config()
  config.data.root = 'images'
  config.data.data_dir = '~/tfds'
  config.data.manual_dir = 'gs://bucket/manual'
  paths.resolve_config_paths(config)
  assert config.data.root == str(tmp_path / 'images')
  assert config.data.data_dir == str(tmp_path / 'home' / 'tfds')
  assert config.data.manual_dir == 'gs://bucket/manual'
  assert config.data.fashion_mnist_dir == '/usr/share/datasets/fashion-mnist'
