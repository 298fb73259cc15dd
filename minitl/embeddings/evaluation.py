"""The standard benchmarks of word vectors, found offline first, and one report of them.

- Google's analogies ``questions-words.txt`` (Mikolov et al. 2013a): 19,544 questions
  "a is to b as c is to d" in 14 sections (capitals, plurals, tenses, ...); accuracy of 3CosAdd.
- WordSim-353 (Finkelstein et al. 2002) and SimLex-999 (Hill et al. 2015): word pairs with human
  similarity scores; Spearman's rho between those and the cosines. WordSim mixes relatedness
  with similarity (cup-coffee scores high), SimLex asks for similarity only, which is harder
  for window-based vectors.

Where the files are looked for, in order: ``$MINITL_DATA/word-vector-eval/``, the cache
``~/.cache/minitl/word-vector-eval/``, the copies inside an installed gensim
(``gensim/test/test_data/``), then a download (checked against the SHA-256 of those copies).
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from ..data.paths import DataNotFoundError, find_file, locate
from .keyed_vectors import PairScores

DATASET = "word-vector-eval"
ANALOGIES, WORDSIM353, SIMLEX999 = "questions-words.txt", "wordsim353.tsv", "simlex999.txt"
_GENSIM_RAW = "https://raw.githubusercontent.com/piskvorky/gensim/develop/gensim/test/test_data/"
SOURCES = {  # file -> (official url, sha256 of the copy gensim ships)
    ANALOGIES: (_GENSIM_RAW + ANALOGIES, "8c29b3332afc46f3fb8be04cb5297bf96f39aa7131272dff57869b4485b22a36"),
    WORDSIM353: (_GENSIM_RAW + WORDSIM353, "f92a022fc2537793a15bc3a8c162ebcd74990e033a228bb6388cb71e4c0b1e1d"),
    SIMLEX999: (_GENSIM_RAW + SIMLEX999, "d5e0501971478a511430ee880bd0121e94ac701ba86d90544d83e6d2ba3db05d"),
}


def gensim_test_data() -> Path | None:
    """gensim's ``test/test_data`` folder, found without importing gensim (slow), or None."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data"


def _check_sha256(expected: str):
    def check(path: Path):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != expected:
            raise ValueError(f"checksum mismatch: got {digest}, expected {expected}")
    return check


def eval_file(name: str) -> Path:
    """The path of one of ``questions-words.txt``, ``wordsim353.tsv``, ``simlex999.txt``."""
    if name not in SOURCES:
        raise ValueError(f"unknown evaluation set {name!r}; known: {sorted(SOURCES)}")
    found = find_file(DATASET, [name])
    if found is not None:
        return found
    folder = gensim_test_data()
    if folder is not None and (folder / name).is_file():
        return folder / name
    url, sha = SOURCES[name]
    try:
        return locate(DATASET, name, url=url, check=_check_sha256(sha))
    except DataNotFoundError as exc:
        raise DataNotFoundError(f"{exc}\n  * or `pip install gensim`, which ships a copy") from None


def evaluate(wv, restrict_vocab: int = 300000) -> dict:
    """The figures every word-vector run reports: WordSim-353 and SimLex-999 Spearman, analogy
    accuracy (3CosAdd), and the top 5 answers to king - man + woman."""
    results = {}
    for key, name in (("wordsim353_spearman", WORDSIM353), ("simlex999_spearman", SIMLEX999)):
        try:
            scores = wv.evaluate_word_pairs(eval_file(name), restrict_vocab=restrict_vocab)
        except ValueError:      # a tiny vocabulary knows fewer than two of the pairs
            scores = PairScores(float("nan"), float("nan"), 100.0)
        results[key] = scores.spearman
        results[key.replace("spearman", "oov_percent")] = scores.oov_ratio
    accuracy, sections = wv.evaluate_word_analogies(eval_file(ANALOGIES), restrict_vocab=restrict_vocab)
    results["analogy_accuracy"] = accuracy
    results["analogy_questions_answered"] = len(sections[-1]["correct"]) + len(sections[-1]["incorrect"])
    if all(w in wv for w in ("king", "man", "woman")):
        results["king_man_woman"] = [w for w, _ in wv.most_similar(positive=["king", "woman"],
                                                                   negative=["man"], topn=5)]
    return results


def format_report(results: dict) -> str:
    lines = [f"WordSim-353 Spearman   {results['wordsim353_spearman']:.3f}"
             f"  ({results['wordsim353_oov_percent']:.1f}% of pairs out of vocabulary)",
             f"SimLex-999 Spearman    {results['simlex999_spearman']:.3f}"
             f"  ({results['simlex999_oov_percent']:.1f}% of pairs out of vocabulary)",
             f"analogies (3CosAdd)    {results['analogy_accuracy']:.3f}"
             f"  ({results['analogy_questions_answered']} questions in vocabulary)"]
    if "king_man_woman" in results:
        lines.append("king - man + woman ->  " + ", ".join(results["king_man_woman"]))
    return "\n".join(lines)
