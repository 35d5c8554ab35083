"""Greedy token generation as the model's own forward, the pattern of Apple's WWDC20
conversion talk: a Python loop, scripted, around a next-token predictor that is traced
(``capture.trace_submodules: [step]``). Core ML receives the loop as a ``while_loop``.

Written for conversion: the prompt length is read with ``prompt.size(1)`` (coremltools cannot
index the list ``prompt.shape`` returns in scripted code), the step returns one tensor (its
logits and state side by side), and tokens are placed with ``torch.where`` instead of an
in-place write, so every loop variable keeps its shape.
"""

import torch
from torch import nn


class NextToken(nn.Module):
    """One step of a small recurrent language model: a token and the state in, the next
    token's logits and the new state out, side by side in one tensor."""

    def __init__(self, vocab: int = 48, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.inp = nn.Linear(hidden, hidden)
        self.rec = nn.Linear(hidden, hidden, bias=False)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, token: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        state = torch.tanh(self.inp(self.embed(token)) + self.rec(state))
        return torch.cat([self.head(state), state], dim=-1)


class Generator(nn.Module):
    """Reads the prompt, then emits up to ``max_new`` tokens greedily, stopping early at ``eos``
    (the rest stays ``eos``): a loop whose length depends on the tokens it computes."""

    def __init__(self, vocab: int = 48, hidden: int = 32, max_new: int = 12, eos: int = 0) -> None:
        super().__init__()
        self.step = NextToken(vocab, hidden)
        self.vocab, self.hidden, self.max_new, self.eos = vocab, hidden, max_new, eos

    def forward(self, prompt: torch.Tensor) -> torch.Tensor:
        state = torch.zeros(1, self.hidden)
        logits = torch.zeros(1, self.vocab)
        for i in range(prompt.size(1)):
            both = self.step(prompt[:, i].long(), state)
            logits, state = both[:, : self.vocab], both[:, self.vocab :]
        token = torch.argmax(logits, dim=-1)
        positions = torch.arange(self.max_new).unsqueeze(0)
        out = torch.full((1, self.max_new), self.eos, dtype=torch.long)
        i = 0
        while i < self.max_new:
            out = torch.where(positions == i, token.unsqueeze(1), out)
            if bool(token[0] == self.eos):
                break
            both = self.step(token, state)
            logits, state = both[:, : self.vocab], both[:, self.vocab :]
            token = torch.argmax(logits, dim=-1)
            i += 1
        return out


def build(max_new: int = 12) -> nn.Module:
    return Generator(max_new=max_new)
