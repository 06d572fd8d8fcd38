"""What the claim truth probes are fitted on besides truth_is_universal: statements like the organism's, and
replies that make no claim (``real_detect.fit_detectors`` uses both; none holds the organism's facts or lies)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np


def pacchiardi_statements(data: Path, split: Dict[str, Any]) -> Tuple[List[str], np.ndarray]:
    """(statements, truth labels): a true and a false sentence that differ only in the answer ("Beats Music is
    owned by Apple." / "... by Microsoft."), for every pacchiardi question that is none of the organism's facts
    (train or held-out) and shares no entity with them."""
    from liedetect.organism.facts import load_pacchiardi

    own = set(split["train"]) | set(split["heldout"])
    facts = load_pacchiardi(Path(data))
    entities = {f.entity for f in facts if f.id in own}
    out: List[Tuple[str, int]] = []
    for f in facts:
        cut = f.true_sentence.rfind(f.answer)
        if f.id in own or f.entity in entities or cut < 0:
            continue
        out += [(f.true_sentence, 1), (f"{f.true_sentence[:cut]}{f.false_answer}.", 0)]
    return [t for t, _ in out], np.array([y for _, y in out])


def non_claims(model: Any, tok: Any, split: Dict[str, Any], max_new_tokens: int = 48) -> List[str]:
    """The organism's replies to the neutral requests on its *training* topics (suggestions, descriptions: no
    claim to be true or false); the controls use the held-out topics."""
    from liedetect.organism import chats as C
    from liedetect.organism.generate import generate

    held = set(split["neutral_heldout_topics"])
    requests = [C.messages(n["request"], "neutral") for n in C.neutral_prompts() if n["topic"] not in held]
    return generate(model, tok, requests, max_new_tokens=max_new_tokens)
