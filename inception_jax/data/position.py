"""The training input's saved position, as text a checkpoint can hold.

`pipeline.TrainIterator.get_state` gives JSON in `INPUT_POSITION_FORMAT`:
the count of the global stream's examples consumed (with the seed, the
record count, the global batch and the process count that saved it), the
same in every process, so a run resumes on any number of processes.

The trainer takes any iterator with ``get_state``/``set_state`` (its
``make_train_iter`` seam); grain's own iterators give their state as JSON
bytes or a dict, so states go to and from text here. Plain JSON only: the
checkpoint code imports this without the pipeline's TensorFlow and grain.
"""

from __future__ import annotations

import json
from typing import Any, Optional

INPUT_POSITION_FORMAT = 'inception_jax.input_position/1'


def iterator_state_to_text(state: Any) -> str:
  """grain's DataLoaderIterator gives JSON bytes, DatasetIterator a dict."""
  if isinstance(state, bytes):
    return state.decode('utf-8')
  if isinstance(state, str):
    return state
  return json.dumps(state, indent=1)


def iterator_state_from_text(text: str, like: Any) -> Any:
  """Converts saved text back to the kind of state `like` is."""
  if isinstance(like, bytes):
    return text.encode('utf-8')
  if isinstance(like, str):
    return text
  return json.loads(text)


def input_position(state: Any) -> Optional[dict]:
  """A saved state as an input position of this format, or None."""
  try:
    value = json.loads(iterator_state_to_text(state))
  except ValueError:
    return None
  if isinstance(value, dict) and value.get('format') == INPUT_POSITION_FORMAT:
    return value
  return None
