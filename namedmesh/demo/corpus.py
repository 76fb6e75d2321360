"""The demo's text: sentences generated from a small grammar (nothing is downloaded).

The grammar has enough structure (agreement, fixed phrases, punctuation) for a
small character-level model to learn quickly, and enough choice that the loss
cannot reach zero.
"""

import numpy as np

SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the farmer", "a small bird",
            "the teacher", "our neighbour", "the children", "two horses"]
PLURAL = {"the children", "two horses"}
VERBS = [("sees", "see"), ("likes", "like"), ("finds", "find"), ("watches", "watch"),
         ("follows", "follow"), ("paints", "paint")]
OBJECTS = ["the river", "a red apple", "the green field", "an open window", "the long road",
           "a quiet garden", "the morning sun", "a wooden boat"]
ENDINGS = [".", " every day.", " in the rain.", " at night.", " again and again."]


def sentences(n: int, seed: int = 0):
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(n):
        subject = SUBJECTS[rng.randint(len(SUBJECTS))]
        singular, plural = VERBS[rng.randint(len(VERBS))]
        verb = plural if subject in PLURAL else singular
        obj = OBJECTS[rng.randint(len(OBJECTS))]
        out.append("%s %s %s%s" % (subject, verb, obj, ENDINGS[rng.randint(len(ENDINGS))]))
    return out


class Corpus:
    """Characters of the generated text as ids, and batches of context windows."""

    def __init__(self, num_sentences: int = 4000, seed: int = 0):
        self.text = " ".join(sentences(num_sentences, seed)) + " "
        self.chars = sorted(set(self.text))
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.ids = np.array([self.index[c] for c in self.text], np.int32)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def batch(self, rng: np.random.RandomState, shape, context: int):
        """(windows [*shape, context] of the previous characters, targets [*shape])."""
        count = int(np.prod(shape))
        starts = rng.randint(context, len(self.ids) - 1, size=count)
        windows = np.stack([self.ids[starts - context + 1 + k] for k in range(context)], -1)
        targets = self.ids[starts + 1]
        return windows.reshape(tuple(shape) + (context,)), targets.reshape(shape)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)
