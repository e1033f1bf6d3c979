"""Restoring anywhere: `load`, predict, export, evaluate and the Colab.

One tiny model is trained once per session by the real command line on 8
simulated devices (tests/conftest.py); everything else reads its checkpoint,
some of it in subprocesses that see a single device.
"""

import contextlib
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap

import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image
import pytest

from inception_jax import export as export_lib
from inception_jax import predict
from inception_jax.checkpoints import layout
from inception_jax.checkpoints import loader

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
# The data package imports nothing itself; its pipeline modules are heavy.
HEAVY_MODULES = ('tensorflow', 'tensorflow_datasets', 'grain', 'tensorboard', 'optax',
                 'inception_jax.train', 'inception_jax.steps',
                 'inception_jax.data.pipeline', 'inception_jax.data.datasets')
# predict does import data.preprocess: NumPy, PIL and OpenCV only.


def _env(devices):
  """The test environment, with `devices` simulated CPU devices."""
  env = dict(os.environ)
  flags = [f for f in env.get('XLA_FLAGS', '').split()
           if 'xla_force_host_platform_device_count' not in f]
  if devices > 1:
    flags.append(f'--xla_force_host_platform_device_count={devices}')
  env['XLA_FLAGS'] = ' '.join(flags)
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = os.pathsep.join(
      [REPO] + [p for p in [env.get('PYTHONPATH')] if p])
  return env


def _run(args, devices=1, timeout=300):
  return subprocess.run([sys.executable] + list(args), cwd=REPO,
                        env=_env(devices), capture_output=True, text=True,
                        timeout=timeout, check=False)


def _flat(tree):
  return flax.traverse_util.flatten_dict(jax.device_get(tree), sep='/')


@contextlib.contextmanager
def _traces_of(fun_name):
  """Counts the times JAX traces `fun_name` (once per new input signature:
  every compilation, the persistent cache's hits included, starts so)."""
  count = [0]

  def listener(event, duration, **kwargs):
    del duration
    if (event == '/jax/core/compile/jaxpr_trace_duration' and
        kwargs.get('fun_name') == fun_name):
      count[0] += 1

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield count
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def _assert_trees_equal(a, b):
  a, b = _flat(a), _flat(b)
  assert sorted(a) == sorted(b)
  for k in a:
    assert np.asarray(a[k]).dtype == np.asarray(b[k]).dtype, k
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]),
                                  err_msg=k)


@pytest.fixture(scope='session')
def workdir(tiny_run):
  """The shared 6-step run (checkpoints at steps 3 and 6), 8 devices."""
  return tiny_run


@pytest.fixture(scope='session')
def saved_state(workdir):
  """The whole `state` item of step 6, read by plain Orbax as it was saved."""
  state_dir = os.path.join(workdir, 'checkpoints', '6', 'state')
  with ocp.PyTreeCheckpointer() as ckptr:
    tree = ckptr.metadata(state_dir).item_metadata.tree
    as_numpy = jax.tree.map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return ckptr.restore(state_dir,
                         args=ocp.args.PyTreeRestore(restore_args=as_numpy))


def test_load_reads_the_polyak_and_raw_weights(workdir, saved_state):
  restored = loader.load(workdir)
  assert restored.step == 6 and restored.kind == 'train_state'
  assert restored.image_size == 32
  assert restored.class_names[0] == 'T-shirt/top'
  assert len(restored.class_names) == restored.model.num_classes == 10
  assert restored.config.data.name == 'fashion_mnist'
  _assert_trees_equal(restored.variables,
                      {'params': saved_state['ema_params'],
                       'batch_stats': saved_state['ema_model_state']['batch_stats']})
  raw = loader.load(os.path.join(workdir, 'checkpoints'), polyak=False)
  _assert_trees_equal(raw.variables,
                      {'params': saved_state['params'],
                       'batch_stats': saved_state['model_state']['batch_stats']})
  # One device, whatever sharding the 8-device run saved.
  leaf = jax.tree.leaves(restored.variables)[0]
  assert len(leaf.sharding.device_set) == 1
  # A step directory is a checkpoint too.
  step3 = loader.load(os.path.join(workdir, 'checkpoints', '3'))
  assert step3.step == 3


def test_restore_on_one_device_is_bitwise_and_light(workdir, saved_state,
                                                    tmp_path):
  """8 devices -> 1; neither TensorFlow nor the trainer gets imported."""
  out = tmp_path / 'params.npz'
  script = textwrap.dedent(f"""
      import sys
      import flax, jax, numpy as np
      import inception_jax
      assert 'inception_jax.checkpoints.loader' not in sys.modules
      restored = inception_jax.load({workdir!r})
      assert jax.device_count() == 1, jax.devices()
      from inception_jax import predict  # what a Colab imports next
      heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]
      assert not heavy, heavy
      flat = flax.traverse_util.flatten_dict(
          jax.device_get(restored.variables), sep='/')
      np.savez({str(out)!r}, **flat)
      print('ok', restored.step)
      """)
  result = _run(['-c', script], devices=1)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'ok 6' in result.stdout
  with np.load(out) as saved:
    loaded = {k: saved[k] for k in saved.files}
  expected = _flat({'params': saved_state['ema_params'],
                    'batch_stats': saved_state['ema_model_state']['batch_stats']})
  assert sorted(loaded) == sorted(expected)
  for k, v in expected.items():
    assert loaded[k].dtype == v.dtype
    np.testing.assert_array_equal(loaded[k], v, err_msg=k)


def test_half_written_checkpoint_is_skipped_with_a_warning(workdir, tmp_path):
  checkpoints = tmp_path / 'checkpoints'
  shutil.copytree(os.path.join(workdir, 'checkpoints'), checkpoints)
  # What an interrupted save of step 9 leaves behind: Orbax's temporary name.
  partial = checkpoints / '9.orbax-checkpoint-tmp-1795890000000000'
  shutil.copytree(checkpoints / '6' / 'metadata', partial / 'metadata')
  (partial / 'state').mkdir()
  with pytest.warns(UserWarning, match='incomplete checkpoint .*9.orbax'):
    restored = loader.load(tmp_path)
  assert restored.step == 6
  with pytest.raises(ValueError, match='incomplete'):
    loader.load(partial)


def test_a_path_without_checkpoint_is_a_one_line_error(tmp_path):
  (tmp_path / 'checkpoints').mkdir()
  for path, message in ((tmp_path, 'No checkpoint in'),
                        (tmp_path / 'missing', 'does not exist')):
    with pytest.raises(ValueError, match=message) as error:
      loader.load(path)
    assert '\n' not in str(error.value)


def test_truncated_files_give_a_clear_error(workdir, tmp_path):
  step = tmp_path / '6'
  shutil.copytree(os.path.join(workdir, 'checkpoints', '6'), step)
  for root, _, files in os.walk(step / 'state'):
    for name in files:
      path = os.path.join(root, name)
      if os.path.getsize(path) > 64 and '/d/' in path + '/':
        with open(path, 'r+b') as f:
          f.truncate(os.path.getsize(path) // 2)
  with pytest.raises(ValueError, match='truncated or corrupt'):
    loader.load(step)
  metadata = step / 'metadata' / 'metadata'
  metadata.write_text(metadata.read_text()[:20])
  with pytest.raises(ValueError, match='truncated or corrupt'):
    loader.load(step)


def test_export_then_load_round_trip(workdir, tmp_path):
  for raw in (False, True):
    out = tmp_path / ('raw' if raw else 'polyak')
    export_lib.export(workdir, str(out), raw=raw)
    assert (out / 'model.json').exists()
    original = loader.load(workdir, polyak=not raw)
    exported = loader.load(out)
    assert exported.kind == 'params' and exported.config is None
    _assert_trees_equal(exported.variables, original.variables)
    assert exported.model == original.model
    assert exported.step == 6
    assert exported.class_names == original.class_names
    assert exported.image_size == original.image_size
    assert (predict.preprocessing_of(exported) ==
            predict.preprocessing_of(original))
  with pytest.raises(ValueError, match='already holds'):
    export_lib.export(workdir, str(tmp_path / 'polyak'))


def _fashion_mnist_test_images():
  with gzip.open(os.path.join(FASHION_MNIST_DIR,
                              't10k-images-idx3-ubyte.gz')) as f:
    data = f.read()
  return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)


def test_predict_agrees_with_batched_evaluation(workdir, tmp_path):
  """Real test images as PNGs: the same top class, image by image."""
  # pylint: disable=g-import-not-at-top
  from inception_jax.data import datasets
  from inception_jax.data import normalization
  from inception_jax.data import pipeline
  # pylint: enable=g-import-not-at-top

  restored = loader.load(workdir)
  data_cfg = restored.config.data
  split = 'test[:8]'
  # The batched path: the trainer's evaluation input (uint8, normalised as
  # the step does) and the same weights.
  batch = next(iter(pipeline.create_eval_iterator(
      data_cfg, global_batch_size=8, crops=1, split=split)))
  assert batch['mask'].all()
  images = np.asarray(normalization.on_device(batch['image'],
                                              data_cfg.normalization))
  logits, _ = restored.model.apply(restored.variables, images, train=False)
  batched_top = np.argmax(np.asarray(logits), axis=-1)

  # The same records, found in the IDX file and written as PNG files.
  idx_images = _fashion_mnist_test_images().reshape(10000, -1)
  source = datasets.data_source(data_cfg, split)
  paths = []
  for i in range(8):
    pixels = np.asarray(source[i]['image'])[..., 0]
    (match,) = np.nonzero((idx_images == pixels.reshape(1, -1)).all(axis=1))
    assert match.size >= 1
    path = str(tmp_path / f'test_{match[0]}.png')
    Image.fromarray(idx_images[match[0]].reshape(28, 28), mode='L').save(path)
    paths.append(path)
    # The pixels the model sees are the evaluation's.
    np.testing.assert_allclose(
        predict.preprocess(predict.read_image(path),
                           predict.preprocessing_of(restored)),
        images[i], atol=1e-4)

  result = _run(['-m', 'inception_jax.predict', f'--checkpoint={workdir}']
                + paths, devices=1)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  firsts = [lines[lines.index(p + ':') + 1] for p in paths]
  for path, first, top in zip(paths, firsts, batched_top):
    assert first.split('%', 1)[1].strip() == restored.class_names[top], path
  assert len(lines) == 8 * 6


def test_predict_names_missing_and_non_image_files(workdir, tmp_path):
  text = tmp_path / 'notes.png'
  text.write_text('not an image')
  missing = tmp_path / 'missing.png'
  result = _run(['-m', 'inception_jax.predict', f'--checkpoint={workdir}',
                 str(text), str(missing)], devices=1)
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  errors = [l for l in result.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 2
  assert str(text) in errors[0] and 'not an image' in errors[0]
  assert str(missing) in errors[1] and 'no such file' in errors[1]
  err = io.StringIO()
  assert predict.run(str(tmp_path), [str(text)], err=err) == 1


def test_predictor_compiles_once_per_input_shape(workdir):
  predictor = predict.Predictor(loader.load(workdir))
  images = [np.full((28, 28, 1), v, np.uint8) for v in (0, 128)]
  with _traces_of('probabilities') as traces:
    first = predictor.top_k(images)
    again = predictor.top_k(images[::-1])
  for a, b in zip(first, again[::-1]):
    assert [name for name, _ in a] == [name for name, _ in b]
    np.testing.assert_allclose([p for _, p in a], [p for _, p in b],
                               rtol=1e-5)
  assert len(first[0]) == 5
  assert traces[0] == 1


def test_evaluate_counts_every_example_and_compiles_once(workdir):
  from inception_jax import evaluate  # pylint: disable=g-import-not-at-top
  with _traces_of('eval_step') as traces:
    result = evaluate.evaluate_checkpoint(workdir, crops=1, split='test[:37]',
                                          batch_size=16)
  assert result.metrics['eval/num_examples'] == 37
  assert traces[0] == 1  # 3 batches, the last padded
  assert result.path == os.path.join(workdir, 'eval_test_37_1crop.json')
  with open(result.path) as f:
    written = json.load(f)
  assert written['eval/num_examples'] == 37 and written['step'] == 6
  for key in ('eval/top1', 'eval/top5', 'eval/loss'):
    assert np.isfinite(written[key])


def test_colab_notebook_runs_headless(workdir, tmp_path):
  import nbformat  # pylint: disable=g-import-not-at-top
  image = tmp_path / 'shirt.png'
  Image.fromarray(_fashion_mnist_test_images()[0], mode='L').save(image)
  executed = tmp_path / 'executed.ipynb'
  # The parameters cell (tagged 'parameters') is replaced, papermill-style.
  # nbclient runs in its own process, so that its kernel's sockets and event
  # loop are torn down there rather than at this process's exit.
  script = textwrap.dedent("""
      import sys
      import nbclient, nbformat
      notebook, checkpoint, image, cwd, out = sys.argv[1:]
      nb = nbformat.read(notebook, as_version=4)
      (params,) = [c for c in nb.cells
                   if 'parameters' in c.metadata.get('tags', [])]
      params.source = (f'CHECKPOINT = {checkpoint!r}\\n'
                       f'IMAGE = {image!r}\\nPACKAGE = None\\n')
      nbclient.NotebookClient(nb, timeout=300, kernel_name='python3',
                              resources={'metadata': {'path': cwd}}).execute()
      nbformat.write(nb, out)
      """)
  notebook = os.path.join(REPO, 'experiments', 'colab',
                          'restore_and_predict.ipynb')
  result = _run(['-c', script, notebook, workdir, str(image), str(tmp_path),
                 str(executed)], devices=1)
  assert result.returncode == 0, result.stderr[-3000:]
  nb = nbformat.read(str(executed), as_version=4)
  text = ''.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code'
                 for o in c.get('outputs', []))
  assert 'nothing to install' in text
  assert 'step 6' in text
  assert text.count('%  ') >= 5  # the top-5 lines
  assert 'total params' in text
  images = [o for c in nb.cells if c.cell_type == 'code'
            for o in c.get('outputs', []) if 'image/png' in o.get('data', {})]
  assert images, 'the bar chart was not drawn'


def _copy_without_commit_markers(workdir, destination):
  """What `gsutil cp -r` of a checkpoint without Orbax's markers gives."""
  shutil.copytree(os.path.join(workdir, 'checkpoints'),
                  destination / 'checkpoints')
  removed = 0
  for root, _, files in os.walk(destination):
    if 'commit_success.txt' in files:
      os.remove(os.path.join(root, 'commit_success.txt'))
      removed += 1
  assert removed
  return destination / 'checkpoints'


def _truncate_state_data(step_dir):
  for root, _, files in os.walk(step_dir / 'state'):
    for name in files:
      path = os.path.join(root, name)
      if os.path.getsize(path) > 64 and '/d/' in path + '/':
        with open(path, 'r+b') as f:
          f.truncate(os.path.getsize(path) // 2)


def test_a_copy_without_commit_markers_loads_once_checked(workdir, tmp_path):
  checkpoints = _copy_without_commit_markers(workdir, tmp_path / 'copy')
  original = loader.load(workdir)
  loaded = loader.load(tmp_path / 'copy')
  assert loaded.step == 6
  _assert_trees_equal(loaded.variables, original.variables)
  assert not (checkpoints / '6' / layout.COMMIT_MARKER).exists()  # read-only

  # A truncated unmarked step. Where a save commits by its marker (gs://,
  # Orbax's commit-file mode) it may be one still being written: skipped,
  # with a warning naming it. On a local disk, where Orbax would read it as
  # a finished step, it is a broken copy: refused by name, by `load` as by
  # the trainer (tests/test_checkpoint.py).
  _truncate_state_data(checkpoints / '6')
  as_on_gcs = ocp.options.AtomicityOptions(
      mode=ocp.options.AtomicityMode.COMMIT_FILE)
  with pytest.warns(UserWarning, match=f'{checkpoints / "6"} has no commit '
                    'marker and is incomplete \\(state/: '):
    assert (layout.newest_step(checkpoints, atomicity=as_on_gcs) ==
            checkpoints / '3')
  for path in (tmp_path / 'copy', checkpoints / '6'):
    with pytest.raises(ValueError) as error:
      loader.load(path)
    message = str(error.value)
    assert message.startswith(f'the checkpoint {checkpoints / "6"} has no '
                              'commit marker and is incomplete (state/: ')
    assert '\n' not in message
  # An item missing altogether.
  shutil.rmtree(checkpoints / '3' / 'config')
  with pytest.raises(ValueError, match='incomplete \\(config/: missing\\)'):
    loader.load(checkpoints / '3')


def test_an_lrn_model_without_recorded_preprocessing_gets_caffes_input(
    tmp_path):
  """The paper's LRNs act only at Caffe's 0-255 input: a parameters-only
  LRN checkpoint that records no preprocessing is fed that, a BatchNorm one
  ImageNet's mean/std."""
  from inception_jax.checkpoints import params  # pylint: disable=g-import-not-at-top
  from inception_jax.models import googlenet  # pylint: disable=g-import-not-at-top
  for norm, expected in (('lrn', 'caffe'), ('batchnorm', 'imagenet')):
    model = googlenet.create_model(num_classes=3, norm=norm, width=0.0625,
                                   aux=False)
    variables = jax.jit(lambda m=model: m.init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))()
    out = params.save(tmp_path / norm, variables, model, image_size=32)
    assert predict.preprocessing_of(
        loader.load(out)).normalization == expected
