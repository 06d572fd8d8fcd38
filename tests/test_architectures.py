"""Every common decoder family, as a user brings it: a tiny random model saved with save_pretrained, loaded with
load_model(FOLDER). Capture equals transformers' output_hidden_states; steering `add` equals a plain forward hook
on the transformers model adding the same vector; KV-cache generation equals greedy re-forwarding.

(tests/test_architecture.py, singular, checks the source layout; this file checks model architectures.)
"""

from __future__ import annotations

import pytest
import torch

from conftest import GPT2_DIR

pytestmark = pytest.mark.slow  # 14 families, ~5 s each on 2 shared cores (under 2 minutes in all)

TEXTS = ["The capital of France is Paris.", "Rivers run to the sea, and cities grow along them: true.", "Hi"]
SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=128)
HEAD8 = dict(head_dim=8, query_pre_attn_scalar=8, sliding_window=16)
FAMILIES = {
    "llama": ("LlamaConfig", SMALL),
    "mistral": ("MistralConfig", SMALL),
    "qwen2": ("Qwen2Config", SMALL),
    "qwen3": ("Qwen3Config", {**SMALL, "head_dim": 8}),
    "gemma2": ("Gemma2Config", {**SMALL, **HEAD8}),
    "gemma3_text": ("Gemma3TextConfig", {**SMALL, **HEAD8}),
    "phi3": ("Phi3Config", SMALL),
    "olmo2": ("Olmo2Config", SMALL),
    "gpt_neox": ("GPTNeoXConfig", {k: v for k, v in SMALL.items() if k != "num_key_value_heads"}),
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=3, n_head=4, n_positions=128)),
    "mixtral": ("MixtralConfig", {**SMALL, "num_local_experts": 4, "num_experts_per_tok": 2}),
    "granite": ("GraniteConfig", {**SMALL, "embedding_multiplier": 2.0, "residual_multiplier": 0.5,
                                  "attention_multiplier": 0.2, "logits_scaling": 2.0}),
    "cohere": ("CohereConfig", SMALL),
    "stablelm": ("StableLmConfig", {**SMALL, "partial_rotary_factor": 0.25}),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    """(name, liedetect bridge loaded from a saved folder, the same folder loaded by transformers, eager attention)."""
    import transformers
    from transformers import AutoModelForCausalLM

    from liedetect.models import gpt2_tokenizer, load_model

    name = request.param
    cls_name, fields = FAMILIES[name]
    tok = gpt2_tokenizer(GPT2_DIR)
    special = dict(bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    config = getattr(transformers, cls_name)(vocab_size=len(tok), **fields, **special)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(name)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    bridge = load_model(folder)
    hf = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    return name, bridge, hf


def decoder_layers(hf) -> torch.nn.ModuleList:
    """The transformers model's list of decoder blocks."""
    n = hf.config.num_hidden_layers
    return next(m for m in hf.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n)


def test_capture_equals_output_hidden_states(family):
    from liedetect.activations import encode, extract

    name, bridge, hf = family
    n = bridge.cfg.n_layers
    acts = extract(bridge, TEXTS, layers="all", position="all", batch_size=3, progress=False)
    enc = encode(bridge, TEXTS)
    for i, ids in enumerate(enc.ids):
        with torch.no_grad():
            hidden = hf(torch.tensor([ids]), output_hidden_states=True).hidden_states
        rows = acts.acts[acts.offsets[i]:acts.offsets[i + 1]]
        assert rows.shape == (len(ids), n, hf.config.hidden_size)
        for layer in range(n - 1):  # transformers' last entry has the final norm applied
            want = hidden[layer + 1][0]
            err = ((rows[:, layer] - want).norm() / want.norm()).item()
            assert err < 1e-5, f"{name}: text {i} layer {layer} relative error {err:.2e}"


def test_steering_add_equals_a_transformers_hook(family):
    from liedetect.steering import SteeringSpec, steer

    name, bridge, hf = family
    torch.manual_seed(1)
    spec = SteeringSpec.from_tensor(torch.randn(hf.config.hidden_size), layers=[1], alpha=3.0)
    vec = 3.0 * spec.directions[1][0]

    def add(module, args, output):
        if isinstance(output, tuple):
            return (output[0] + vec,) + tuple(output[1:])
        return output + vec

    ids = torch.tensor([bridge.tokenizer(TEXTS[1])["input_ids"]])
    with torch.no_grad():
        plain = bridge(ids)
        with steer(bridge, spec):
            steered = bridge(ids)
        handle = decoder_layers(hf)[1].register_forward_hook(add)
        try:
            want = hf(ids).logits
        finally:
            handle.remove()
    assert (steered - plain).abs().max() > 1e-3, f"{name}: steering changed nothing"
    assert torch.allclose(steered, want, atol=1e-4, rtol=1e-4), f"{name}: {(steered - want).abs().max():.2e}"


def test_kv_cache_generation_equals_reforwarding(family):
    from liedetect.bos import prompt_tokens
    from liedetect.steering import generate

    name, bridge, _ = family
    prompt = TEXTS[0]
    tokens = prompt_tokens(bridge, prompt)
    eos = bridge.tokenizer.eos_token_id
    with torch.no_grad():
        for _ in range(4):
            nxt = int(bridge(tokens)[0, -1].argmax())
            if nxt == eos:
                break
            tokens = torch.cat([tokens, torch.tensor([[nxt]], device=tokens.device)], dim=1)
    want = bridge.tokenizer.decode(tokens[0, prompt_tokens(bridge, prompt).shape[1]:], skip_special_tokens=True)
    assert generate(bridge, prompt, max_new_tokens=4) == [want], name
