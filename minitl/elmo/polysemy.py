"""Polysemy with numbers: do a word's contextual vectors follow its sense?

Chapter: "Transfer learning in NLP", ELMo versus static word vectors. word2vec gives "bank" one
vector, whatever the sentence; ELMo gives every occurrence its own. If those vectors carry the
sense, an occurrence's nearest neighbour among the other occurrences of the word should have
the same sense.

**The occurrences** come from GCIDE's own sentences. A two-sense word has, for each sense, a set
of *cue words* (`SENSE_CUES`: "river", "shore", "stream" for the river bank; "money",
"deposit", "notes" for the money bank). An occurrence is labelled with a sense when cue words
of that sense, and of no other, occur within `CUE_WINDOW` tokens of it; occurrences with no cue
or with cues of both senses are left out. This rule is ours and imperfect (a dictionary
sentence may mention a river near a money bank), so the labels carry some noise; it is stated
here so that every number below can be checked. For each word the same number of occurrences
of each sense is kept, spread evenly through the dictionary, so chance is about 1/2.

**The measure**, per layer: the leave-one-out 1-nearest-neighbour sense-match rate. For each
occurrence, take the other occurrence of the same word with the highest cosine similarity; the
rate is the fraction whose neighbour has the same sense. When several neighbours tie (as all do
for a static vector, identical for every occurrence), each counts with an equal share, so a
context-free vector scores exactly the chance rate: for a word with n_s occurrences of sense s
among n, sum_s n_s (n_s - 1) / (n (n - 1)).

The model sees a window of `CONTEXT_WINDOW` tokens on each side of the occurrence (the whole
sentence when it is shorter); the cue words lie inside it, which is the point: a contextual
model may use them, a static one cannot.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Two senses per word, each named by a few cue words chosen by hand from GCIDE's own use.
SENSE_CUES = {
    "bank": {"river": "river stream streams shore water sand lake sea channel brook slope steep edge earth",
             "money": "money deposit deposits notes note bills bill funds credit cash banker bankers loan "
                      "loans account capital currency coin banking"},
    "seal": {"animal": "marine fur mammal mammals phoca flippers walrus arctic pacific species inhabiting hunted "
                       "sea seals",
             "stamp": "wax stamp impression impressed document documents engraved signet affix affixed "
                      "instrument writing custody letter"},
    "bark": {"tree": "tree trees wood trunk outer rind cork stem stems branches tanning cinchona oak",
             "dog": "dog dogs cry howl yelp noise fox wolf voice"},
    "spring": {"season": "season seasons summer winter autumn year vernal months march april",
               "water": "water waters fountain source issuing ground earth mineral hot well wells"},
    "pitch": {"tar": "tar resin black pine turpentine bituminous asphalt boiled",
              "sound": "tone tones sound sounds note notes voice music musical vibrations acute key"},
    "bat": {"animal": "wing wings mammal mammals nocturnal flying mouse membrane insectivorous vampire cave fruit",
            "club": "ball cricket club game stick striking strike baseball hit"},
}
SENSE_CUES = {word: {sense: frozenset(cues.split()) for sense, cues in senses.items()}
              for word, senses in SENSE_CUES.items()}
CUE_WINDOW = 12       # cue words count within this many tokens of the occurrence
CONTEXT_WINDOW = 20   # the model reads this many tokens on each side of the occurrence


@dataclass
class Occurrence:
    """One occurrence of `word`, labelled `sense`: `tokens` (its context) with the word at
    `position`."""

    word: str
    sense: str
    tokens: list
    position: int


def label_sense(tokens, position, senses, window=CUE_WINDOW):
    """The one sense whose cue words occur within `window` tokens of `tokens[position]`, or
    None (no cue, or cues of two senses)."""
    near = set(tokens[max(0, position - window):position]) | set(tokens[position + 1:position + 1 + window])
    found = [sense for sense, cues in senses.items() if near & cues]
    return found[0] if len(found) == 1 else None


def find_occurrences(corpus, cues=None, per_sense=40):
    """Labelled occurrences of each word of `cues` (default `SENSE_CUES`) in `corpus` (a
    `Corpus`, e.g. `tl.data.gcide_corpus()`): for each word, `per_sense` of each sense (fewer
    when a sense has fewer; the same number for both), evenly spread over the corpus, the first
    occurrence of the word in a sentence only. Returns a list of `Occurrence`."""
    cues = SENSE_CUES if cues is None else cues
    found = []
    for word, senses in cues.items():
        if word not in corpus.vocab:
            continue
        positions = np.flatnonzero(corpus.ids == corpus.vocab.word_to_id[word])
        sentences = np.searchsorted(corpus.offsets, positions, side="right") - 1
        first = np.concatenate([[True], sentences[1:] != sentences[:-1]])
        by_sense = {sense: [] for sense in senses}
        for at, sentence in zip(positions[first], sentences[first]):
            start, end = corpus.offsets[sentence], corpus.offsets[sentence + 1]
            lo, hi = max(start, at - CONTEXT_WINDOW), min(end, at + CONTEXT_WINDOW + 1)
            tokens = corpus.vocab.decode(corpus.ids[lo:hi])
            sense = label_sense(tokens, int(at - lo), senses)
            if sense is not None:
                by_sense[sense].append(Occurrence(word, sense, tokens, int(at - lo)))
        keep = min(per_sense, *(len(v) for v in by_sense.values()))
        if keep < 2:
            continue
        for occurrences in by_sense.values():
            chosen = np.linspace(0, len(occurrences) - 1, keep).round().astype(int)
            found += [occurrences[i] for i in chosen]
    return found


def sense_match_rate(vectors, senses, tolerance=1e-6):
    """Leave-one-out 1-NN sense-match rate of `vectors` (n, d) labelled `senses` (n,), by
    cosine similarity; neighbours within `tolerance` of the best share the vote equally."""
    x = np.asarray(vectors, dtype=np.float64)
    senses = np.asarray(senses)
    if len(x) != len(senses) or len(x) < 2:
        raise ValueError(f"sense_match_rate: needs at least 2 vectors with one sense each, got {len(x)} "
                         f"vectors and {len(senses)} senses")
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity >= similarity.max(axis=1, keepdims=True) - tolerance
    same = senses[:, None] == senses[None, :]
    return float(np.mean((nearest & same).sum(axis=1) / nearest.sum(axis=1)))


def chance_rate(senses):
    """The expected rate of a neighbour drawn at random: sum_s n_s (n_s - 1) / (n (n - 1))."""
    _, counts = np.unique(np.asarray(senses), return_counts=True)
    n = counts.sum()
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def occurrence_vectors(elmo, occurrences, batch_size=64):
    """ELMo's vectors of each occurrence at every layer: an array (L + 1, n, 2H)."""
    out = []
    for start in range(0, len(occurrences), batch_size):
        chunk = occurrences[start:start + batch_size]
        layers = elmo.embed_batch([o.tokens for o in chunk])
        out += [layer[:, o.position] for layer, o in zip(layers, chunk)]
    return np.stack(out, axis=1)


def polysemy_rates(layer_vectors, occurrences, static=None):
    """Per word and overall: the sense-match rate of each ELMo layer (layer_vectors (L + 1, n, D)),
    of a static KeyedVectors `static` (one vector per word), and the chance rate.

    Returns {"words": {word: {"n": n, "layers": [rate per layer], "static": rate, "chance": rate,
    "within": [mean cosine within a sense per layer], "across": [... across senses]}},
    "overall": the same, averaged over the words}."""
    words = sorted({o.word for o in occurrences}, key=[o.word for o in occurrences].index)
    result = {}
    for word in words:
        index = np.array([i for i, o in enumerate(occurrences) if o.word == word])
        senses = np.array([occurrences[i].sense for i in index])
        entry = {"n": len(index), "chance": chance_rate(senses),
                 "layers": [sense_match_rate(layer[index], senses) for layer in layer_vectors]}
        if static is not None and word in static:
            entry["static"] = sense_match_rate(np.repeat(static[word][None, :], len(index), axis=0), senses)
        entry["within"], entry["across"] = zip(*(_mean_cosines(layer[index], senses) for layer in layer_vectors))
        result[word] = entry
    keys = ("chance", "layers", "static", "within", "across")
    overall = {k: np.mean([r[k] for r in result.values() if k in r], axis=0).tolist()
               for k in keys if any(k in r for r in result.values())}
    overall["n"] = sum(r["n"] for r in result.values())
    return {"words": result, "overall": overall}


def measure(elmo, corpus, static=None, per_sense=40):
    """The whole measurement: the labelled occurrences of `SENSE_CUES`' words in `corpus`
    (`find_occurrences`), their ELMo vectors at every layer, and `polysemy_rates` (with the
    static KeyedVectors `static` beside them). Returns (occurrences, vectors, rates)."""
    occurrences = find_occurrences(corpus, per_sense=per_sense)
    if not occurrences:
        raise ValueError("polysemy: no word of SENSE_CUES has two labelled occurrences of each sense in this corpus")
    vectors = occurrence_vectors(elmo, occurrences)
    return occurrences, vectors, polysemy_rates(vectors, occurrences, static)


def rate_table(rates):
    """(rows, headers) of the sense-match rates: one row per word and one for all words, with
    the chance rate, the static vectors' rate and each ELMo layer's, rounded to 3 places."""
    rows = []
    for word, r in [*rates["words"].items(), ("all words", rates["overall"])]:
        rows.append((word, r["n"], round(r["chance"], 3), round(r.get("static", float("nan")), 3),
                     *(round(v, 3) for v in r["layers"])))
    layers = len(rates["overall"]["layers"])
    return rows, ["word", "occurrences", "chance", "word2vec", *(f"ELMo layer {l}" for l in range(layers))]


def _mean_cosines(vectors, senses):
    """(mean cosine between occurrences of the same sense, mean cosine across senses)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    same = senses[:, None] == senses[None, :]
    off_diagonal = ~np.eye(len(senses), dtype=bool)
    return float(similarity[same & off_diagonal].mean()), float(similarity[~same].mean())
