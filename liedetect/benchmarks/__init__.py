"""Readers for the field's deception benchmarks, producing liedetect's own transcripts, and `liedetect bench`.

- ``apollo``: Apollo Research's rollout files (``{dataset_class, base_name, variant, model, rollouts: [...]}``;
  each rollout has ``input_messages`` with ``detect`` flags, an empty assistant placeholder, ``output_strs``
  and ``graded_deception``) and its alpaca control replies;
- ``scenarios``: Truth_is_Universal's hand-labelled real-world role-play scenarios as chats;
- ``instructed_pairs``: RepE true/false facts as instructed honest / dishonest pairs (``builtin:instructed-pairs``);
- ``bench``: one detector recipe, several data sets, one control, one results table in Apollo's columns.

A reader never drops a row silently: every rollout sample it does not turn into a transcript is counted by
reason in its ``ReadSummary``. The data themselves are never shipped (licences); point the readers at a
clone of the upstream repository.
"""

from liedetect.benchmarks.apollo import ReadSummary, grade_label, read_apollo_control, read_apollo_rollouts
from liedetect.benchmarks.bench import read_benchmark, run_bench
from liedetect.benchmarks.instructed_pairs import instructed_pair_transcripts, read_facts
from liedetect.benchmarks.scenarios import read_scenarios

__all__ = ["ReadSummary", "grade_label", "read_apollo_rollouts", "read_apollo_control", "read_benchmark",
           "instructed_pair_transcripts", "read_facts", "read_scenarios", "run_bench"]
