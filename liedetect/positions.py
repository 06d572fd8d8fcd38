"""Token positions: the rules that say which token rows of a text a capture reads, and picking them in a hook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Tuple, Union

import torch

from liedetect.errors import DataError


@dataclass(frozen=True)
class Span:
    """Character span [start, end) of the text; the tokens overlapping it are reduced by `reduce`."""

    start: int
    end: int
    reduce: str = "mean"


@dataclass(frozen=True)
class Marker:
    """The last token of the last occurrence of `text` in each input (e.g. the answer word)."""

    text: str


Position = Union[str, int, Span, Marker]


def position_label(position: Position) -> str:
    """A short string naming a position rule, stored in metadata."""
    if isinstance(position, Span):
        return f"span:{position.start}:{position.end}:{position.reduce}"
    if isinstance(position, Marker):
        return f"marker:{position.text}"
    return str(position)


def parse_position(text: str) -> Position:
    """'last', 'mean', 'all', an integer, 'span:S:E[:reduce]' or 'marker:TEXT' -> a position rule."""
    if text in ("last", "mean", "all"):
        return text
    if text.startswith("marker:"):
        return Marker(text[len("marker:"):])
    if text.startswith("span:"):
        parts = text.split(":")
        try:
            return Span(int(parts[1]), int(parts[2]), *(parts[3:4]))
        except (ValueError, IndexError):
            raise DataError(f"Cannot read position {text!r}; write span:START:END[:mean|last].") from None
    try:
        return int(text)
    except ValueError:
        raise DataError(f"Unknown position {text!r}; use last, mean, all, an integer, span:S:E or "
                        f"marker:TEXT.") from None


def token_rows(mask: torch.Tensor, offsets: List[Tuple[int, int]], text: str, position: Position,
               index: int) -> Tuple[torch.Tensor, str]:
    """The token indices of one sequence a position rule reads, and how to reduce them ('one', 'mean', 'all')."""
    real = mask.nonzero().flatten()
    if position == "last":
        return real[-1:], "one"
    if position in ("mean", "all"):
        return real, str(position)
    if isinstance(position, int):
        if not -len(real) <= position < len(real):
            raise DataError(f"Token index {position} is out of range for text {index} ({len(real)} tokens).")
        return real[position].reshape(1), "one"
    if isinstance(position, Marker):
        at = text.rfind(position.text)
        if at < 0:
            raise DataError(f"Marker {position.text!r} does not occur in text {index}: {text[:80]!r}.")
        span = Span(at, at + len(position.text), "last")
    else:
        span = position
    chosen = [k for k, (s, e) in enumerate(offsets) if e > s and s < span.end and e > span.start]
    if not chosen:
        raise DataError(f"No token of text {index} overlaps characters {span.start}..{span.end}.")
    rows = real[torch.tensor(chosen)]
    return (rows[-1:], "one") if span.reduce == "last" else (rows, "mean")


class Picker:
    """The rows each sequence of a batch keeps, applied to one layer's hidden states [batch, seq, d] in its hook.

    Rows are gathered in the model's dtype and only the picked ones become float32 (then reduced), so a layer
    costs its picked rows, never a float32 copy of [batch, seq, d] (nor a stack of layers).
    """

    def __init__(self, picks: List[Tuple[torch.Tensor, str]]):
        self.picks = picks
        self.single = all(how == "one" for _, how in picks)
        self.index = torch.cat([idx for idx, _ in picks]) if self.single else None
        self._on: Dict[torch.device, Any] = {}  # the indices, copied once to each device a layer lives on

    def _indices(self, device: torch.device) -> Any:
        if device not in self._on:
            if self.single:
                self._on[device] = (torch.arange(len(self.index), device=device), self.index.to(device))
            else:
                self._on[device] = [idx.to(device) for idx, _ in self.picks]
        return self._on[device]

    def __call__(self, hidden: torch.Tensor) -> Any:
        if self.single:
            rows, index = self._indices(hidden.device)
            return hidden[rows, index].float()  # [batch, d]
        out = []
        for row, (idx, (_, how)) in enumerate(zip(self._indices(hidden.device), self.picks)):
            picked = hidden[row, idx].float()
            out.append(picked.mean(dim=0) if how == "mean" else picked)
        return out if any(how == "all" for _, how in self.picks) else torch.stack(out)
