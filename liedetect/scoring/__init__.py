"""Score chat transcripts for deception: read them, render them, pick the tokens of the messages under
test, apply a probe at its layer to every one of those tokens, stream the scores to JSONL, calibrate.

Sign convention: a probe's ``decision_function`` is > 0 where it reads an activation as *true*; the
deception score of a token is its negation, so **higher = more suspicious** everywhere in this package.

Input formats
- JSONL: one transcript per line, ``{"id"?, "label"?, "group"?, "messages": [{"role", "content", "label"?}]}``.
  ``label`` names its meaning: "honest" / "truthful" or "deceptive" / "lie"; or a boolean under an
  unambiguous key, ``"deceptive": true``. A bare 1/0 or true/false is refused (statement sets write
  1 = true while evaluation sets often write 1 = deceptive). A message's own label overrides the
  transcript's. ``group`` is a free name for plots (defaults to the label's name). Missing ids become
  ``line-N``.
- CSV ``statement,label`` (a statement set: 1 / true = a true statement): each row is a one-message transcript whose single ``assistant`` message is the
  statement, rendered verbatim (no chat template), id ``row-N``.

Rendering (``fmt``): ``auto`` = the tokenizer's chat template when it has one, else ``plain``, the format
of ``liedetect.datasets.render_chat``: ``"{role}: {content}\\n"`` per message; ``text`` = the contents
joined by single spaces with no role names (for models trained on bare text, like the organism).
The scored tokens of a message are those whose character offsets overlap the message's content in the
rendered text, so template markup (role headers, end-of-turn tokens) is never scored.

Modules: ``transcripts`` (the input and its validation), ``render`` (chat rendering, token selection),
``plan`` (batch planning), ``scorer`` (the model pass and records), ``store`` (the streamed, resumable
score file), ``calibration`` (threshold and metrics), ``run`` (the orchestration), ``ray_engine``
(``engine="ray"``).
"""

from liedetect.probe_io import load_probe
from liedetect.scoring.calibration import Calibration, Metrics, calibrate, evaluate, message_rows, threshold_at_fpr
from liedetect.scoring.plan import plan_batches
from liedetect.scoring.render import FORMATS, TOO_LONG, Encoding, encode_all, encode_transcript, render
from liedetect.scoring.run import (BatchRunner, ScoringResult, check_control, local_runner, preflight, run_scoring,
                                   score_transcripts)
from liedetect.scoring.scorer import AGGREGATES, Scorer, make_record, probe_site, scored_activations, training_activations
from liedetect.scoring.store import ScoreFile, read_scores, score_outputs, transcript_fingerprint
from liedetect.scoring.transcripts import (DECEPTIVE, HONEST, HONEST_NAMES, LIE_NAMES, ROLES, Message, Problem, ScoringError, Transcript,
                                           TranscriptSet, label_name, load_transcripts, parse_label, read_label,
                                           transcript_from_obj)

__all__ = [
    "HONEST", "DECEPTIVE", "ROLES", "AGGREGATES", "FORMATS", "TOO_LONG", "HONEST_NAMES", "LIE_NAMES", "ScoringError",
    "Message", "Transcript", "Problem", "TranscriptSet", "parse_label", "label_name", "transcript_from_obj",
    "load_transcripts", "Encoding", "render", "encode_transcript", "encode_all", "plan_batches", "probe_site",
    "load_probe", "scored_activations", "training_activations", "Scorer", "make_record", "ScoreFile", "read_scores",
    "threshold_at_fpr", "message_rows", "Calibration", "Metrics", "calibrate", "evaluate", "ScoringResult",
    "BatchRunner", "local_runner", "run_scoring", "score_transcripts", "check_control", "preflight", "score_outputs",
    "transcript_fingerprint", "read_label",
]
