"""`evaluate --checkpoint --config`: parameters-only weights on any data.

A converted torchvision GoogLeNet (random weights, full size) is evaluated on
tiny ImageNet archives (the layout of ILSVRC2012_img_{train,val}.tar) with
the preprocessing its checkpoint records, and its loss is checked against
torchvision's own forward pass on the same images.
"""

import io

import numpy as np
from PIL import Image
import pytest
import torch
import torchvision

from configs import imagenet
from inception_jax import convert
from inception_jax import evaluate
from inception_jax.checkpoints import loader
from inception_jax.data import normalization
from inception_jax.data import pipeline
from tests.helpers import tar_bytes


def _jpeg(rng, height, width):
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(
      buffer, format='JPEG')
  return buffer.getvalue()


@pytest.fixture(scope='module')
def tiny_imagenet(tmp_path_factory):
  root = tmp_path_factory.mktemp('imagenet')
  manual = root / 'manual'
  manual.mkdir()
  rng = np.random.default_rng(0)
  wnids = ['n01440764', 'n01443537']
  (manual / 'ILSVRC2012_img_train.tar').write_bytes(tar_bytes({
      f'{wnid}.tar': tar_bytes({
          f'{wnid}_{i}.JPEG': _jpeg(rng, 300, 260) for i in range(2)})
      for wnid in wnids}))
  (manual / 'ILSVRC2012_img_val.tar').write_bytes(tar_bytes({
      f'ILSVRC2012_val_{i:08d}.JPEG': _jpeg(rng, 280, 320)
      for i in (1, 2, 3)}))
  return str(manual), str(root / 'tfds')


@pytest.fixture(scope='module')
def torchvision_checkpoint(tmp_path_factory):
  torch.manual_seed(0)
  net = torchvision.models.googlenet(weights=None, aux_logits=True,
                                     init_weights=False).eval()
  directory = tmp_path_factory.mktemp('tv')
  pth = str(directory / 'googlenet.pth')
  torch.save(net.state_dict(), pth)
  out = convert.convert_file(pth, str(directory / 'converted'),
                             transform_input=net.transform_input)
  return out, net


def test_converted_weights_evaluate_like_torchvision(tiny_imagenet,
                                                    torchvision_checkpoint):
  manual, data_dir = tiny_imagenet
  checkpoint, net = torchvision_checkpoint
  config = imagenet.get_config('variant=torchvision')
  config.data.manual_dir = manual
  config.data.data_dir = data_dir
  # ImageNet's 16 grain worker processes would each import TensorFlow to
  # read 3 images.
  config.data.worker_count = 0
  # The data config's preprocessing is replaced by the checkpoint's.
  config.data.normalization = 'minus_one_one'
  config.data.eval_crop_fraction = 1.0
  config.data.image_size = 96
  restored = loader.load(checkpoint)
  assert evaluate.recorded_preprocessing(restored) == {
      'image_size': 224, 'normalization': 'imagenet',
      'eval_crop_fraction': 0.875}

  result = evaluate.evaluate_checkpoint(checkpoint, config=config,
                                        batch_size=8)
  metrics = result.metrics
  assert metrics['eval/num_examples'] == 3
  assert metrics['split'] == 'validation'
  assert result.path.startswith(checkpoint)

  # torchvision on the very images the evaluation saw.
  with config.unlocked():
    config.data.update(evaluate.recorded_preprocessing(restored))
  images, labels = [], []
  for batch in pipeline.create_eval_iterator(
      config.data, global_batch_size=8, process_index=0, process_count=1):
    keep = batch['mask'].astype(bool)
    # The pixels as torchvision's transforms give them (mean/std).
    images.append(normalization.normalize(batch['image'][keep],
                                          config.data.normalization))
    labels.append(batch['label'][keep])
  images, labels = np.concatenate(images), np.concatenate(labels)
  assert images.shape == (3, 224, 224, 3)
  with torch.no_grad():
    logits = net(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
  loss = torch.nn.functional.cross_entropy(
      logits, torch.from_numpy(labels).long()).item()
  np.testing.assert_allclose(metrics['eval/loss'], loss, rtol=1e-4)


def test_a_class_count_that_is_not_the_data_is_one_line(
    tiny_imagenet, torchvision_checkpoint, tiny_run):
  manual, data_dir = tiny_imagenet
  config = imagenet.get_config('variant=torchvision')
  config.data.manual_dir = manual
  config.data.data_dir = data_dir
  # ImageNet's 16 grain worker processes would each import TensorFlow to
  # read 3 images.
  config.data.worker_count = 0
  with pytest.raises(ValueError, match='has 10 outputs but imagenet2012 '
                     'has 1000 classes'):
    evaluate.evaluate_checkpoint(tiny_run, config=config, batch_size=8,
                                 write=False)
