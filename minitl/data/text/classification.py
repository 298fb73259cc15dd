"""A labelled text dataset in three splits, with the numbers every classifier is judged against.

Fine-tuning, linear probing and the PEFT methods of the chapter are all judged on a supervised
task: a text in, a class out. Before any model, two numbers say what "good" means:

- the **class balance**, ``count_c / n`` for each class c of a split, and
- the **majority baseline**, the test accuracy of always answering the most frequent *training*
  class, ``n_test(argmax_c n_train(c)) / n_test``. A classifier that does not beat it has
  learned nothing from its input.

:class:`TextClassificationData` carries the splits (``train``, ``val``, ``test``, each a
:class:`TextSplit` of token lists, int64 labels and the headword an example came from) and
reports both numbers; ``print(data)`` shows them as a table.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class TextSplit:
    """One split: ``texts[i]`` (a list of tokens) has class ``labels[i]`` and came from ``headwords[i]``.

    Indexing gives ``(tokens, label)``, so a split works as a map-style dataset.
    """

    texts: list[list[str]]
    labels: np.ndarray
    headwords: list[str]

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if not len(self.texts) == len(self.labels) == len(self.headwords):
            raise ValueError(f"texts, labels and headwords differ in length: {len(self.texts)}, "
                             f"{len(self.labels)}, {len(self.headwords)}")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[list[str], int]:
        return self.texts[i], int(self.labels[i])

    def class_counts(self, n_classes: int) -> np.ndarray:
        """How many examples of each class, an int64 array of length ``n_classes``."""
        return np.bincount(self.labels, minlength=n_classes)


@dataclass
class TextClassificationData:
    """The three splits of a text classification task, its class names and how it was built.

    ``dropped`` counts the source records that gave no example, by reason (documented by the
    builder), so a reader can see what the task leaves out.
    """

    name: str
    classes: tuple[str, ...]
    train: TextSplit
    val: TextSplit
    test: TextSplit
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def splits(self) -> dict[str, TextSplit]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def class_counts(self) -> dict[str, np.ndarray]:
        """Examples per class in each split: ``{"train": array([...]), "val": ..., "test": ...}``."""
        return {name: split.class_counts(len(self.classes)) for name, split in self.splits.items()}

    def balance(self) -> dict[str, np.ndarray]:
        """The class fractions of each split (``count_c / n``); all zeros for an empty split."""
        return {name: counts / max(counts.sum(), 1) for name, counts in self.class_counts().items()}

    def majority_class(self) -> int:
        """The most frequent class of the training split (the lowest index on a tie)."""
        return int(np.argmax(self.train.class_counts(len(self.classes))))

    def majority_baseline(self, split: str = "test") -> float:
        """Accuracy on ``split`` of always predicting the most frequent *training* class."""
        if split not in self.splits:
            raise ValueError(f"split must be one of {SPLIT_NAMES}, got {split!r}")
        labels = self.splits[split].labels
        if len(labels) == 0:
            raise ValueError(f"{self.name}: the {split} split is empty, it has no baseline")
        return float(np.mean(labels == self.majority_class()))

    def summary(self) -> str:
        """A table of the class counts per split, the balance and the majority baseline."""
        counts = self.class_counts()
        width = max(len(c) for c in (*self.classes, "total"))
        lines = [f"{self.name}: {len(self.classes)} classes, "
                 + ", ".join(f"{len(s):,} {n}" for n, s in self.splits.items())]
        lines.append(f"  {'class':<{width}} " + " ".join(f"{n:>8}" for n in SPLIT_NAMES) + "  train share")
        train_share = self.balance()["train"]
        for c, name in enumerate(self.classes):
            lines.append(f"  {name:<{width}} " + " ".join(f"{counts[n][c]:>8,}" for n in SPLIT_NAMES)
                         + f"  {train_share[c]:>10.1%}")
        lines.append(f"  {'total':<{width}} " + " ".join(f"{len(self.splits[n]):>8,}" for n in SPLIT_NAMES))
        if len(self.train) and len(self.test):
            lines.append(f"  majority baseline ({self.classes[self.majority_class()]}): "
                         f"{self.majority_baseline():.1%} test accuracy")
        if self.dropped:
            lines.append("  dropped: " + ", ".join(f"{k} {v:,}" for k, v in self.dropped.items()))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()
