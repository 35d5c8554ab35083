"""An LSTM sequence classifier: a sequence of feature vectors in, class scores out."""

import torch
from torch import nn


class SequenceClassifier(nn.Module):
    def __init__(self, features: int = 8, hidden: int = 32, num_classes: int = 3) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(sequence)
        return self.head(outputs[:, -1])


def build(features: int = 8, hidden: int = 32, num_classes: int = 3) -> nn.Module:
    return SequenceClassifier(features=features, hidden=hidden, num_classes=num_classes)
