"""LexLIP training: data sets, losses, phase 1 / phase 2 / fine-tune loops and evaluation (issue 4)."""
