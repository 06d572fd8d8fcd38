"""Generation with and without steering (greedy by default, KV cache on)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from liedetect.bos import prompt_tokens
from liedetect.compat import check_generation_versions
from liedetect.steering.hooks import maybe_steer
from liedetect.steering.spec import SteeringSpec

def chat_prompts(model: Any, prompts: Union[str, Sequence[str]], system: Optional[str] = None) -> List[str]:
    """Each prompt as a user turn (after an optional system turn) through the tokenizer's own chat template,
    ending where the assistant's answer starts; refused for a tokenizer without one."""
    from liedetect.errors import SteeringError

    template = getattr(model.tokenizer, "chat_template", None)
    if not template:
        raise SteeringError("This model's tokenizer has no chat template; steer plain prompts instead (drop --chat).")
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    head = [{"role": "system", "content": system}] if system else []
    return [model.tokenizer.apply_chat_template(head + [{"role": "user", "content": p}], tokenize=False,
                                                add_generation_prompt=True) for p in prompt_list]


def generate(model: Any, prompts: Union[str, Sequence[str]], spec: Optional[SteeringSpec] = None,
             alpha: Optional[float] = None, max_new_tokens: int = 30, greedy: bool = True, seed: int = 0) -> List[str]:
    """Continuations of each prompt (prompt text excluded), steered by `spec` when given."""
    check_generation_versions()
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    out = []
    for prompt in prompt_list:
        torch.manual_seed(seed)
        tokens = prompt_tokens(model, prompt)  # the model's BOS policy, as in extract; a chat prompt keeps its own tokens
        with maybe_steer(model, spec, alpha=alpha), torch.no_grad():
            result = model.generate(tokens, max_new_tokens=max_new_tokens, do_sample=not greedy, verbose=False,
                                    use_past_kv_cache=True, stop_at_eos=True, return_type="tokens")
        out.append(model.tokenizer.decode(result[0, tokens.shape[1]:], skip_special_tokens=True))
    return out


def compare_generations(model: Any, prompts: Union[str, Sequence[str]], spec: SteeringSpec, max_new_tokens: int = 30,
                        greedy: bool = True, seed: int = 0) -> List[Dict[str, str]]:
    """Unsteered and steered continuations of each prompt: [{'prompt', 'unsteered', 'steered'}]."""
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    plain = generate(model, prompt_list, None, max_new_tokens=max_new_tokens, greedy=greedy, seed=seed)
    steered = generate(model, prompt_list, spec, max_new_tokens=max_new_tokens, greedy=greedy, seed=seed)
    return [{"prompt": p, "unsteered": a, "steered": b} for p, a, b in zip(prompt_list, plain, steered)]
