"""Which variants are compared: each with a baseline, and one switch at a time.

Every comparison is on the final top-1, paired by seed where the two
variants share seeds (`stats.difference`). `judge` then decides, over every
distinct pair of variants the report compares, which differences are shown
(Holm's correction, `stats.holm`).
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Dict, List, Optional, Sequence

from experiments.report import grouping
from experiments.report import stats

# The metric the differences between variants are computed on.
DIFFERENCE_COLUMN = 'final_top1'

PerRunMetrics = Sequence[Sequence[Dict[str, Any]]]


def values_by_seed(variant: grouping.Variant,
                   metrics: Sequence[Dict[str, Any]]) -> Dict[Any, float]:
  """{seed: final top-1} of the variant's runs that evaluated."""
  out = {}
  for i, (run, m) in enumerate(zip(variant.runs, metrics)):
    if m[DIFFERENCE_COLUMN] is not None:
      out[(run.config or {}).get('seed', f'run{i}')] = m[DIFFERENCE_COLUMN]
  return out


def judge(*tables: List[Dict[str, Any]]) -> None:
  """Sets `p_holm`, `contrasts` and `verdict` on every row of the tables:
  the p-values adjusted over the distinct pairs of variants compared (a pair
  in both tables counts once)."""
  rows = [row for table in tables for row in table]
  pairs = {}
  for row in rows:
    pairs.setdefault(frozenset(row['pair']), row['p'])
  adjusted = dict(zip(pairs, stats.holm(list(pairs.values()))))
  tested = sum(p is not None for p in pairs.values())
  for row in rows:
    row['p_holm'] = adjusted[frozenset(row['pair'])]
    row['contrasts'] = tested
    row['verdict'] = stats.verdict(row)


def variant_differences(variants: Sequence[grouping.Variant],
                        per_run: PerRunMetrics,
                        baseline: Optional[str] = None
                        ) -> List[Dict[str, Any]]:
  """Each variant's final top-1 minus the reference variant's, with its
  95% interval (`judge` gives the verdicts). The reference is the first variant whose label matches the
  regular expression `baseline`, or the first variant."""
  values = [values_by_seed(v, m) for v, m in zip(variants, per_run)]
  candidates = [i for i, v in enumerate(variants)
                if values[i] and (baseline is None or
                                  re.search(baseline, v.label))]
  if not candidates:
    return []
  ref = candidates[0]
  return [{'variant': variant.label, 'reference': variants[ref].label,
           'pair': (variants[ref].label, variant.label),
           **stats.difference(values[ref], values[i])}
          for i, variant in enumerate(variants) if i != ref and values[i]]


def one_switch_differences(variants: Sequence[grouping.Variant],
                           per_run: PerRunMetrics) -> List[Dict[str, Any]]:
  """The effect of each switch with everything else held fixed.

  For every two variants whose settings differ in exactly one key (in a
  module x aux sweep: aux on -> off within each module, and the module
  within each aux setting), the second's final top-1 minus the first's,
  paired by seed, with its 95% interval. `held` names the other settings
  in which the sweep's variants differ, at the values the pair shares.
  """
  values = [values_by_seed(v, m) for v, m in zip(variants, per_run)]
  settings = [v.settings for v in variants]
  varying = grouping.varying_keys(settings)
  rows = []
  for i, j in itertools.combinations(range(len(variants)), 2):
    a, b = settings[i], settings[j]
    changed = [k for k in varying if not grouping.same_value(a.get(k),
                                                             b.get(k))]
    if len(changed) != 1 or not (values[i] and values[j] and a and b):
      continue
    key = changed[0]
    held = ','.join(f'{grouping.short_key(k)}={a.get(k)}'
                    for k in varying if k != key)
    rows.append({'switch': grouping.short_key(key), 'from': a.get(key),
                 'to': b.get(key), 'held': held or '-',
                 'pair': (variants[i].label, variants[j].label),
                 **stats.difference(values[i], values[j])})
  return rows
