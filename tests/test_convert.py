"""torchvision GoogLeNet -> Flax conversion, and parameters-only checkpoints.

The reference is torchvision itself: a randomly initialised googlenet whose
BatchNorm statistics are calibrated to its real activations and then
perturbed, so every tensor matters to the output (a swapped mean/var, a
transposed kernel or an unpermuted aux fc1 all show up as large errors).
"""

import functools
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
torchvision = pytest.importorskip('torchvision')

from inception_jax import convert  # pylint: disable=g-import-not-at-top
from inception_jax.checkpoints import loader
from inception_jax.checkpoints import params
from inception_jax.models import create_model
from inception_jax.models import googlenet

TOL = 1e-4  # relative L2, float32 through ~60 layers


def rel_l2(a, b):
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def nchw_to_nhwc(x):
  return np.transpose(x.detach().numpy(), (0, 2, 3, 1))


def randomized_torch_googlenet(aux_logits=True, num_classes=1000, seed=0):
  """A torchvision googlenet in eval mode whose every tensor carries signal.

  torchvision's init (std 0.01 weights) with running stats of 0/1 would make
  activations vanish, leaving outputs that barely depend on the input or on
  spatial layout. So the running statistics are first set to the real batch
  statistics of a random batch, then perturbed, and BN's affine parameters
  randomised.
  """
  torch.manual_seed(seed)
  model = torchvision.models.googlenet(
      weights=None, aux_logits=aux_logits, init_weights=True,
      transform_input=True, num_classes=num_classes)
  bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  for bn in bns:
    bn.momentum = 1.0  # running stats := this batch's statistics
  model.train()
  with torch.no_grad():
    model(torch.randn(2, 3, 224, 224))
    for bn in bns:
      std = bn.running_var.sqrt()
      bn.running_mean.add_(0.2 * std * torch.randn_like(std))
      bn.running_var.mul_(torch.empty_like(std).uniform_(0.5, 2.0))
      bn.weight.uniform_(0.5, 1.5)
      bn.bias.uniform_(-0.5, 0.5)
      bn.momentum = 0.1
  return model.eval()


def _capture_4a_4d(module, method_name):
  del method_name
  return module.name in ('inception_4a', 'inception_4d')


@functools.partial(jax.jit, static_argnums=0)
def flax_eval(model, variables, images):
  """Eval-mode logits, plus the outputs of inception 4a and 4d."""
  return model.apply(variables, images, train=False,
                     capture_intermediates=_capture_4a_4d,
                     mutable=['intermediates'])


@pytest.fixture(scope='module')
def reference():
  """The torch model, its state dict, inputs and eval-mode outputs."""
  model = randomized_torch_googlenet()
  captured = {}
  hooks = [
      getattr(model, name).register_forward_hook(
          lambda mod, inp, out, name=name: captured.__setitem__(name, out))
      for name in ('inception4a', 'inception4d')
  ]
  torch.manual_seed(1)
  images = torch.randn(2, 3, 224, 224)
  with torch.no_grad():
    logits = model(images)
    aux = {f'aux{i}': getattr(model, f'aux{i}')(captured[f'inception4{c}'])
           for i, c in ((1, 'a'), (2, 'd'))}
  for h in hooks:
    h.remove()
  return dict(model=model, state_dict=model.state_dict(), images=images,
              logits=logits.numpy(), aux=aux, features=captured)


@pytest.fixture(scope='module')
def converted(reference):
  variables = convert.from_torchvision(reference['state_dict'])
  model = create_model(
      **convert.torchvision_model_kwargs(reference['state_dict']))
  (logits, _), state = flax_eval(model, variables,
                            nchw_to_nhwc(reference['images']))
  return dict(model=model, variables=variables, logits=np.asarray(logits),
              intermediates=state['intermediates'])


def test_model_kwargs_follow_state_dict(reference, converted):
  kwargs = convert.torchvision_model_kwargs(reference['state_dict'])
  assert kwargs['aux'] and kwargs['num_classes'] == 1000
  assert kwargs['variant'] == 'torchvision'
  assert converted['model'].transform_input


def test_eval_logits_match_torch(reference, converted):
  err = rel_l2(converted['logits'], reference['logits'])
  print(f'eval logits relative L2: {err:.3g}')
  assert err < TOL
  # The inputs must matter, or agreement would prove little.
  assert np.std(reference['logits'][0] - reference['logits'][1]) > 1e-2


def test_inception_features_match_torch(reference, converted):
  for name, flax_name in (('inception4a', 'inception_4a'),
                          ('inception4d', 'inception_4d')):
    got = converted['intermediates'][flax_name]['__call__'][0]
    err = rel_l2(got, nchw_to_nhwc(reference['features'][name]))
    assert err < TOL, (name, err)


@pytest.mark.parametrize('head, source', [('aux1', 'inception4a'),
                                          ('aux2', 'inception4d')])
def test_aux_heads_match_torch(reference, converted, head, source):
  """Same input feature map into torch's and Flax's head, both in eval mode.

  This is where the fc1 input permutation (torch flattens c,h,w; Flax h,w,c)
  is tested; the main logits never pass through the heads.
  """
  variables = converted['variables']
  aux = googlenet.AuxHead(1000, adaptive_pool=True, batchnorm=True)
  head_vars = {'params': variables['params'][head],
               'batch_stats': variables['batch_stats'][head]}
  x = nchw_to_nhwc(reference['features'][source])
  want = reference['aux'][head].numpy()
  err = rel_l2(aux.apply(head_vars, x, train=False), want)
  print(f'{head} relative L2: {err:.3g}')
  assert err < TOL

  # Without the permutation the same check fails by a wide margin, so it
  # does test the permutation.
  unpermuted = jax.tree.map(lambda a: a, head_vars)
  unpermuted['params'] = dict(head_vars['params'])
  unpermuted['params']['fc1'] = {
      'kernel': reference['state_dict'][f'{head}.fc1.weight'].numpy().T,
      'bias': head_vars['params']['fc1']['bias']}
  assert rel_l2(aux.apply(unpermuted, x, train=False), want) > 100 * TOL


def test_no_aux_state_dict_converts_to_no_aux_model():
  torch.manual_seed(0)
  tv = torchvision.models.googlenet(weights=None, aux_logits=False,
                                    init_weights=True, num_classes=10)
  sd = tv.state_dict()
  assert not any(k.startswith('aux') for k in sd)
  variables = convert.from_torchvision(sd)
  kwargs = convert.torchvision_model_kwargs(sd)
  assert not kwargs['aux'] and kwargs['num_classes'] == 10
  assert 'aux1' not in variables['params']
  expected = convert.expected_variables(create_model(**kwargs))
  assert (jax.tree.map(lambda a: (a.shape, a.dtype), variables) ==
          jax.tree.map(lambda a: (a.shape, a.dtype), expected))
  np.testing.assert_array_equal(variables['params']['classifier']['kernel'],
                                sd['fc.weight'].numpy().T)
  np.testing.assert_array_equal(
      variables['batch_stats']['conv2']['bn']['var'],
      sd['conv3.bn.running_var'].numpy())


@pytest.fixture
def numpy_state_dict(reference):
  return {k: v.numpy() for k, v in reference['state_dict'].items()}


def test_numpy_and_data_parallel_state_dicts(numpy_state_dict, converted):
  prefixed = {'module.' + k: v for k, v in numpy_state_dict.items()}
  variables = convert.from_torchvision(prefixed)
  jax.tree.map(np.testing.assert_array_equal, variables,
               converted['variables'])


@pytest.mark.parametrize('edit, key', [
    ('drop', 'inception4b.branch2.1.bn.running_var'),
    ('drop', 'aux2.fc1.weight'),
    ('reshape', 'inception3a.branch1.conv.weight'),
    ('reshape', 'aux1.fc1.weight'),
    ('add', 'inception4b.branch4.0.weight'),
])
def test_mismatched_state_dict_names_the_key(numpy_state_dict, edit, key):
  sd = dict(numpy_state_dict)
  if edit == 'drop':
    del sd[key]
  elif edit == 'reshape':
    sd[key] = np.zeros(sd[key].shape[:-1] + (sd[key].shape[-1] + 1,),
                       np.float32)
  else:
    sd[key] = np.zeros((3,), np.float32)
  with pytest.raises(ValueError, match=f"'{key}'") as e:
    convert.from_torchvision(sd)
  assert '\n' not in str(e.value)


def test_wrong_num_classes_names_fc(numpy_state_dict):
  with pytest.raises(ValueError, match=r"'fc.weight'.*\(10, 1024\)"):
    convert.from_torchvision(numpy_state_dict, num_classes=10)


def test_convert_file_end_to_end(reference, converted, tmp_path):
  pth = tmp_path / 'googlenet.pth'
  torch.save(reference['state_dict'], pth)
  out = tmp_path / 'ckpt'
  convert.convert_file(str(pth), str(out))

  restored = loader.load(out)
  model, variables, meta = restored.model, restored.variables, restored.meta
  assert meta['format'] == 'inception_jax.params/1'
  assert meta['image_size'] == 224
  assert meta['model']['dtype'] == 'float32'
  assert meta['extra']['source_file'] == 'googlenet.pth'
  names = meta['class_names']
  assert names is None or (len(names) == 1000 and names[0] == 'tench')
  assert model == converted['model']
  jax.tree.map(np.testing.assert_array_equal, variables,
               converted['variables'])
  (logits, _), _ = flax_eval(model, variables,
                             nchw_to_nhwc(reference['images']))
  np.testing.assert_allclose(logits, converted['logits'], rtol=0, atol=1e-6)

  # An existing checkpoint is not silently replaced.
  with pytest.raises(ValueError, match='already holds a checkpoint'):
    convert.convert_file(str(pth), str(out))


@pytest.mark.parametrize('content', ['garbage', 'module', 'list'])
def test_unloadable_file_is_one_line_error(tmp_path, content):
  pth = tmp_path / 'bad.pth'
  if content == 'garbage':
    pth.write_bytes(b'this is not a pickle')
  elif content == 'module':  # a pickled model: refused by weights_only
    torch.save(torch.nn.Linear(2, 2), pth)
  else:
    torch.save([torch.zeros(1)], pth)
  with pytest.raises(ValueError) as e:
    convert.convert_file(str(pth), str(tmp_path / 'out'))
  assert '\n' not in str(e.value) and str(pth) in str(e.value)
  assert not (tmp_path / 'out').exists()


def test_load_empty_dir_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match='not an inception_jax parameters '
                     'checkpoint') as e:
    params.read_meta(tmp_path)
  assert str(tmp_path) in str(e.value) and '\n' not in str(e.value)


def test_sharded_variables_load_on_one_device(tmp_path):
  """Saved from an 8-device mesh, restored without that mesh."""
  mesh = jax.make_mesh((len(jax.devices()),), ('data',))
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  variables = {
      'params': {'w': jax.device_put(jnp.arange(16.0).reshape(8, 2), sharded)},
      'batch_stats': {'m': jnp.ones((3,), jnp.float32)},
  }
  params.save(
      tmp_path / 'c', variables,
      create_model(num_classes=2, dtype=jnp.bfloat16),
      image_size=64, class_names=['a', 'b'], extra={'note': 1})
  restored = loader.load(tmp_path / 'c')
  assert restored.model.dtype == jnp.bfloat16
  assert restored.model.num_classes == 2
  assert restored.class_names == ('a', 'b')
  assert restored.meta['extra'] == {'note': 1}
  w = restored.variables['params']['w']
  assert len(w.sharding.device_set) == 1
  np.testing.assert_array_equal(w, np.arange(16.0).reshape(8, 2))


def test_bad_metadata_rejected_before_writing(tmp_path):
  with pytest.raises(ValueError, match='3 class names'):
    params.save(
        tmp_path / 'c', {}, create_model(num_classes=2), image_size=64,
        class_names=['a', 'b', 'c'])
  assert not (tmp_path / 'c').exists()


def test_modules_do_not_import_torch_or_tensorflow():
  code = ('import sys, inception_jax.convert, inception_jax.checkpoints.loader; '
          "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]; "
          'assert not bad, bad')
  subprocess.run([sys.executable, '-c', code], check=True,
                 cwd=pathlib.Path(__file__).resolve().parents[1],
                 env={'JAX_PLATFORMS': 'cpu', 'PATH': ''})
