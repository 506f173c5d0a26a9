"""GPT-2 small/medium/large/XL with Hugging Face's GPT2LMHeadModel structure.

Module names follow transformers (``transformer.h.0.attn.c_attn``, ``lm_head``), Conv1D layers store weights
as (in, out) like HF, so an HF state_dict loads as is. Attention calls
``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``; the LM head shares its weight with
``transformer.wte`` (counted once by ``model.parameters()``).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class Conv1D(nn.Module):
    """HF's Conv1D: a Linear layer whose weight is stored transposed, (in_features, out_features)."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention: fused QKV projection, SDPA, output projection, dropout."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd {n_embd} is not divisible by n_head {n_head}")
        self.embed_dim = n_embd
        self.num_heads = n_head
        self.head_dim = n_embd // n_head
        self.c_attn = Conv1D(3 * n_embd, n_embd)
        self.c_proj = Conv1D(n_embd, n_embd)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        b, t, _ = hidden_states.shape
        query, key, value = self.c_attn(hidden_states).split(self.embed_dim, dim=2)
        query, key, value = self._split_heads(query), self._split_heads(key), self._split_heads(value)
        attn_output = nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=None,
            dropout_p=self.attn_dropout.p if self.training else 0.0, is_causal=True,
        )
        attn_output = attn_output.transpose(1, 2).contiguous().view(b, t, self.embed_dim)
        return self.resid_dropout(self.c_proj(attn_output))


class GPT2MLP(nn.Module):
    """Feed-forward: c_fc (4x wider) → GELU (tanh approximation, HF "gelu_new") → c_proj → dropout."""

    def __init__(self, n_inner: int, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.c_fc = Conv1D(n_inner, n_embd)
        self.c_proj = Conv1D(n_embd, n_inner)
        self.act = nn.GELU(approximate="tanh")
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(hidden_states))))


class GPT2Block(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then + mlp(ln_2(.))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, layer_norm_epsilon: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=layer_norm_epsilon)
        self.attn = GPT2Attention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd, eps=layer_norm_epsilon)
        self.mlp = GPT2MLP(4 * n_embd, n_embd, dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.attn(self.ln_1(hidden_states)) + hidden_states
        return hidden_states + self.mlp(self.ln_2(hidden_states))


class GPT2Model(nn.Module):
    """Token + position embeddings, dropout, ``n_layer`` blocks, final LayerNorm → (batch, seq, n_embd)."""

    def __init__(self, vocab_size: int, n_positions: int, n_embd: int, n_layer: int, n_head: int,
                 dropout: float, layer_norm_epsilon: float) -> None:
        super().__init__()
        self.n_positions = n_positions
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(n_positions, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(GPT2Block(n_embd, n_head, dropout, layer_norm_epsilon) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, eps=layer_norm_epsilon)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq_len = input_ids.shape[-1]
        if seq_len > self.n_positions:
            raise ValueError(f"sequence of {seq_len} tokens is longer than the context of {self.n_positions}")
        position_ids = torch.arange(seq_len, dtype=torch.long, device=input_ids.device).unsqueeze(0)
        hidden_states = self.drop(self.wte(input_ids) + self.wpe(position_ids))
        for block in self.h:
            hidden_states = block(hidden_states)
        return self.ln_f(hidden_states)


class GPT2LMHeadModel(nn.Module):
    """GPT-2 language model: int64 token ids (batch, seq) → logits (batch, seq, vocab_size)."""

    # causal-mask buffers that older HF checkpoints store; SDPA's is_causal replaces them
    ignored_checkpoint_suffixes = (".attn.bias", ".attn.masked_bias")

    def __init__(self, vocab_size: int = 50257, n_positions: int = 1024, n_embd: int = 768, n_layer: int = 12,
                 n_head: int = 12, dropout: float = 0.1, layer_norm_epsilon: float = 1e-5,
                 initializer_range: float = 0.02) -> None:
        super().__init__()
        self.transformer = GPT2Model(vocab_size, n_positions, n_embd, n_layer, n_head, dropout,
                                     layer_norm_epsilon)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self._init_weights(n_layer, initializer_range)
        self.lm_head.weight = self.transformer.wte.weight  # tied: one tensor, one gradient

    def _init_weights(self, n_layer: int, std: float) -> None:
        # HF GPT2PreTrainedModel._init_weights, incl. the 1/sqrt(2 * n_layer) scaling of residual projections
        for module in self.modules():
            if isinstance(module, (nn.Linear, Conv1D, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=std / math.sqrt(2 * n_layer))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.transformer(input_ids))


def _gpt2(n_embd: int, n_layer: int, n_head: int, vocab_size: int, n_positions: int, dropout: float,
          **sizes: int) -> GPT2LMHeadModel:
    values = {"n_embd": n_embd, "n_layer": n_layer, "n_head": n_head, **sizes}
    for key, value in {**values, "vocab_size": vocab_size, "n_positions": n_positions}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    return GPT2LMHeadModel(vocab_size, n_positions, n_embd, n_layer, n_head, dropout)


def gpt2(*, vocab_size: int = 50257, n_positions: int = 1024, n_embd: int = 768, n_layer: int = 12,
         n_head: int = 12, dropout: float = 0.1) -> GPT2LMHeadModel:
    """GPT-2 small (124,439,808 parameters, tied head)."""
    return _gpt2(n_embd, n_layer, n_head, vocab_size, n_positions, dropout)


def gpt2_medium(*, vocab_size: int = 50257, n_positions: int = 1024, n_embd: int = 1024, n_layer: int = 24,
                n_head: int = 16, dropout: float = 0.1) -> GPT2LMHeadModel:
    """GPT-2 medium (354,823,168 parameters)."""
    return _gpt2(n_embd, n_layer, n_head, vocab_size, n_positions, dropout)


def gpt2_large(*, vocab_size: int = 50257, n_positions: int = 1024, n_embd: int = 1280, n_layer: int = 36,
               n_head: int = 20, dropout: float = 0.1) -> GPT2LMHeadModel:
    """GPT-2 large (774,030,080 parameters)."""
    return _gpt2(n_embd, n_layer, n_head, vocab_size, n_positions, dropout)


def gpt2_xl(*, vocab_size: int = 50257, n_positions: int = 1024, n_embd: int = 1600, n_layer: int = 48,
            n_head: int = 25, dropout: float = 0.1) -> GPT2LMHeadModel:
    """GPT-2 XL (1,557,611,200 parameters); build it with ``device="meta"`` to count or trace it."""
    return _gpt2(n_embd, n_layer, n_head, vocab_size, n_positions, dropout)
