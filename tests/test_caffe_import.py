"""bvlc_googlenet caffemodels as checkpoints: both file formats, the commands
that read the checkpoint, and the one-line errors.

Random-weight files of bvlc_googlenet's layers stand in for BVLC's file;
tests/test_caffe_oracle.py checks the mapping itself against OpenCV's Caffe
engine.
"""

import hashlib
import io
import os

import jax
import numpy as np
import pytest

from configs import image_folder
from inception_jax import caffe
from inception_jax import convert
from inception_jax import evaluate
from inception_jax import predict
from inception_jax.checkpoints import finetune
from inception_jax.checkpoints import loader
from inception_jax.models import googlenet
from tests.helpers import (assert_trees_equal, last_error_line, run_python,
                           random_caffe_variables, write_image_folder,
                           write_random_caffemodel)

RECORDED = {'image_size': 224, 'normalization': 'caffe',
            'eval_crop_fraction': 0.875}


@pytest.mark.parametrize('v1', [False, True], ids=['layer', 'layers_v1'])
def test_both_layer_formats_import_the_same_weights(tmp_path, v1):
  path = tmp_path / 'net.caffemodel'
  variables = write_random_caffemodel(path, v1=v1)
  net = caffe.read(str(path))
  assert net.v1 == v1 and net.name == 'GoogleNet'
  layers = net.with_weights()
  assert list(layers) == caffe.network_order(aux=True)
  conv1_weights, conv1_bias = layers['conv1/7x7_s2'].blobs
  fc_weights, fc_bias = layers['loss3/classifier'].blobs
  if v1:  # the V1 era's 4-D blobs
    assert conv1_bias.shape == (1, 1, 1, 64)
    assert fc_weights.shape == (1, 1, 1000, 1024)
  else:
    assert conv1_bias.shape == (64,) and fc_weights.shape == (1000, 1024)
  # Caffe's OIHW over BGR input; the checkpoint's HWIO over RGB.
  np.testing.assert_array_equal(
      conv1_weights[:, ::-1].transpose(2, 3, 1, 0),
      variables['params']['conv1']['conv']['kernel'])

  imported, kwargs = caffe.from_caffe(net)
  assert kwargs == caffe.model_kwargs(1000, aux=True)
  assert kwargs['norm'] == 'lrn' and kwargs['variant'] == 'paper'
  assert_trees_equal(imported, variables)


def test_a_deploy_only_file_builds_no_aux_heads(tmp_path):
  path = tmp_path / 'deploy_only.caffemodel'
  variables = write_random_caffemodel(path, num_classes=10, aux=False)
  imported, kwargs = caffe.from_caffe(caffe.read(str(path)))
  assert kwargs['aux'] is False and kwargs['num_classes'] == 10
  assert_trees_equal(imported, variables)
  result = convert.convert_caffe_file(str(path), str(tmp_path / 'ckpt'))
  lines = result.lines(str(path))
  # Neither BVLC's name nor its size: no SHA-1 comparison.
  assert result.bvlc_sha1_matches is None and len(lines) == 2
  assert lines[0].startswith(f'no auxiliary heads in {path}: ')
  assert loader.load(tmp_path / 'ckpt').model.aux is False


@pytest.fixture(scope='module')
def two_class_checkpoint(tmp_path_factory):
  """A 2-class bvlc_googlenet file (aux heads included), converted by the
  command as the README prints it."""
  directory = tmp_path_factory.mktemp('caffe')
  path = directory / caffe.BVLC_GOOGLENET_FILE
  variables = write_random_caffemodel(path, num_classes=2)
  out = directory / 'converted'
  result = run_python(['-m', 'inception_jax.convert', f'--caffe={path}',
                       f'--out={out}'])
  assert result.returncode == 0, result.stderr[-2000:]
  return dict(path=path, out=str(out), variables=variables,
              stdout=result.stdout)


def test_convert_command_records_caffes_input(two_class_checkpoint):
  lines = two_class_checkpoint['stdout'].strip().splitlines()
  path = two_class_checkpoint['path']
  # The file is named like BVLC's, so its SHA-1 is checked (and differs).
  assert lines[0].startswith('SHA-1 ') and (
      f"of {path} does not match BVLC's published "
      f'{caffe.BVLC_GOOGLENET_SHA1}') in lines[0]
  assert lines[-1] == f'wrote {two_class_checkpoint["out"]}'
  restored = loader.load(two_class_checkpoint['out'])
  assert restored.model == googlenet.create_model(
      **caffe.model_kwargs(2, aux=True))
  assert_trees_equal(restored.variables, two_class_checkpoint['variables'])
  extra = restored.meta['extra']
  assert extra['source_file'] == caffe.BVLC_GOOGLENET_FILE
  assert extra['caffe_layer_format'] == 'layer'
  # What evaluate and predict apply without being told.
  assert evaluate.recorded_preprocessing(restored) == RECORDED
  assert predict.preprocessing_of(restored) == predict.Preprocessing(
      224, 0.875, 'caffe')


def test_bvlcs_published_sha1_is_reported(tmp_path, monkeypatch):
  path = tmp_path / 'renamed.caffemodel'
  write_random_caffemodel(path, num_classes=2, aux=False)
  sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
  monkeypatch.setattr(caffe, 'BVLC_GOOGLENET_SHA1', sha1)
  monkeypatch.setattr(caffe, 'BVLC_GOOGLENET_SIZE', os.path.getsize(path))
  result = convert.convert_caffe_file(str(path), str(tmp_path / 'out'))
  assert result.bvlc_sha1_matches is True
  assert result.lines(str(path))[0] == (
      f"SHA-1 {sha1} matches BVLC's published bvlc_googlenet.caffemodel.")


def test_evaluate_and_predict_apply_caffes_input(two_class_checkpoint,
                                                 tmp_path):
  """The image-folder evaluation and `predict` on the same images agree, and
  both feed the model Caffe's input (the checkpoint's, not the config's)."""
  write_image_folder(tmp_path / 'folder')
  config = image_folder.get_config(f'root={tmp_path / "folder"}')
  config.data.data_dir = str(tmp_path / 'tfds')
  config.data.worker_count = 0
  checkpoint = two_class_checkpoint['out']
  metrics = evaluate.evaluate_checkpoint(checkpoint, config=config,
                                         batch_size=8).metrics
  assert metrics['eval/num_examples'] == 8

  images = sorted(str(p) for p in (tmp_path / 'folder' / 'val').glob('*/*'))
  predictor = predict.Predictor(loader.load(checkpoint))
  batch = np.stack([predictor.preprocess(predict.read_image(p))
                    for p in images])
  assert batch.shape == (8, 224, 224, 3)
  # 0-255 minus (123, 117, 104): a mid-grey pixel stays near zero.
  assert -124 <= batch.min() and batch.max() <= 152
  probabilities = predictor.probabilities(batch)
  labels = np.array([0 if '/cat/' in p else 1 for p in images])
  loss = -np.mean(np.log(probabilities[np.arange(8), labels]))
  np.testing.assert_allclose(metrics['eval/loss'], loss, rtol=1e-4)

  out = io.StringIO()
  assert predict.run(checkpoint, images[:1], top_k=2, out=out) == 0
  assert out.getvalue().startswith(f'{images[0]}:\n')


def test_fine_tuning_loads_everything_but_the_heads(two_class_checkpoint):
  """A 5-class paper model from the 2-class checkpoint: the trunk is
  loaded, the classifiers (another class count) start afresh."""
  model = googlenet.create_model(num_classes=5, norm='lrn')
  target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                        convert.expected_variables(model))
  source = loader.load(two_class_checkpoint['out']).variables
  merged, report = finetune.merge(target, dict(source), where='ckpt')
  assert sorted({p.split('/')[1] for p in report.reinitialised}) == [
      'aux1', 'aux2', 'classifier']
  np.testing.assert_array_equal(
      merged['params']['inception_5b']['b1x1']['conv']['kernel'],
      source['params']['inception_5b']['b1x1']['conv']['kernel'])


def _net_with(edit):
  net = caffe.to_caffe(random_caffe_variables(num_classes=2))
  edit(net)
  return net


def _drop(name):
  return lambda net: net.layers.remove(net.with_weights()[name])


def _reshape_5x5(net):
  layer = net.with_weights()['inception_4c/5x5']
  layer.blobs[0] = layer.blobs[0][:, :, 1:4, 1:4]


def _alexnet_first(net):
  net.name = 'CaffeNet'
  net.layers.insert(0, caffe.Layer('conv1', 'Convolution', [
      np.zeros((96, 3, 11, 11), np.float32), np.zeros(96, np.float32)]))


@pytest.mark.parametrize('edit, message', [
    (_alexnet_first, "FILE is not bvlc_googlenet: its layer 'conv1' "
     "(Convolution) is not one of bvlc_googlenet's ('conv1/7x7_s2', ...); the "
     "file names its network 'CaffeNet'."),
    (_reshape_5x5, "layer 'inception_4c/5x5' blob 0 (weights) has shape "
     '(64, 24, 3, 3), expected (64, 24, 5, 5)'),
    (_drop('inception_5b/pool_proj'), "has no layer 'inception_5b/pool_proj' "
     'of bvlc_googlenet'),
    (_drop('loss2/fc'), "has no layer 'loss2/fc' of bvlc_googlenet"),
], ids=['another_network', 'wrong_shape', 'missing_layer', 'half_an_aux_head'])
def test_another_network_names_the_first_layer_that_does_not_fit(edit,
                                                                 message):
  with pytest.raises(ValueError) as e:
    caffe.from_caffe(_net_with(edit), source='FILE')
  assert message in str(e.value) and '\n' not in str(e.value)


@pytest.mark.parametrize('content, message', [
    (b'', 'is not a Caffe model'),
    (np.random.default_rng(0).bytes(4096), 'is not a Caffe model'),
    (b'name: "GoogleNet"\nlayer {\n  name: "data"\n}\n', 'is a text prototxt'),
    (b'\n\x03net', 'no layer holds weights'),
], ids=['empty', 'random_bytes', 'prototxt', 'no_weights'])
def test_a_file_that_is_not_a_caffemodel_is_one_line(tmp_path, content,
                                                     message):
  path = tmp_path / 'bad.caffemodel'
  path.write_bytes(content)
  with pytest.raises(ValueError) as e:
    convert.convert_caffe_file(str(path), str(tmp_path / 'out'))
  assert message in str(e.value) and str(path) in str(e.value)
  assert '\n' not in str(e.value)
  assert not (tmp_path / 'out').exists()


def test_the_command_prints_errors_in_one_line(tmp_path):
  path = tmp_path / 'bad.caffemodel'
  path.write_bytes(b'\xff' * 64)
  line = last_error_line(run_python(
      ['-m', 'inception_jax.convert', f'--caffe={path}', '--out=out'],
      cwd=tmp_path))
  assert line.startswith(f'error: {path} is not a Caffe model')
  line = last_error_line(run_python(
      ['-m', 'inception_jax.convert', f'--caffe={path}', '--torchvision=x',
       '--out=out'], cwd=tmp_path))
  assert 'exactly one of --torchvision' in line
