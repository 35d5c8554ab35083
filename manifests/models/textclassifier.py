"""A DistilBERT-style sentence classifier from Hugging Face transformers, built from a config
(random initialisation, then the shipped weights): no download, no tokenizer.

It takes what every text model takes, ``input_ids`` and ``attention_mask`` of one sequence
length, which is why its manifest names that length once under ``dims:``. transformers'
masking code is also what meets the operators coremltools has no conversion for.
"""

from __future__ import annotations

from typing import Any


def build(vocab_size: int = 1024, dim: int = 64, layers: int = 2, heads: int = 4, max_len: int = 128, num_labels: int = 3) -> Any:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(
        vocab_size=vocab_size,
        dim=dim,
        n_layers=layers,
        n_heads=heads,
        hidden_dim=4 * dim,
        max_position_embeddings=max_len,
        num_labels=num_labels,
        dropout=0.0,
        attention_dropout=0.0,
        seq_classif_dropout=0.0,
    )
    return DistilBertForSequenceClassification(config).eval()
