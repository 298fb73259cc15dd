"""ELMo (Peters et al. 2018): deep contextual word representations from a bidirectional LM.

Chapter: "Transfer learning in NLP", ELMo. Pretrain a forward and a backward LSTM language
model that share the token embedding and the softmax (`ELMoBiLM`, `bilm.py`); then, for a
task, read every layer of the frozen biLM for every token (`ELMo`, `embedder.py`) and mix the
layers with weights learned for the task,

    ELMo_task = gamma * sum_l softmax(s)_l * h_l          (`ScalarMix`, `scalar_mix.py`)

    import minitl as tl
    bilm, vocab = tl.elmo.load_pretrained_elmo()   # `minitl pretrain elmo` makes it
    elmo = tl.elmo.ELMo(bilm, vocab)
    layers = elmo.embed_sentence("the bank of the river".split())   # (L + 1, 5, 2H)

`polysemy.py` measures how the vectors of one word follow its sense from context;
`minitl experiment elmo` compares ELMo's features with word2vec's on GCIDE's part-of-speech task.
"""
from .bilm import CandidateSampler, ELMoBiLM, LanguageModel, sampled_softmax_loss
from .data import BOUNDARY, PAD, UNK
from .embedder import ELMo
from .pretraining import load_pretrained_elmo, perplexity, pretrain
from .scalar_mix import ScalarMix, scalar_mix

__all__ = ["ELMoBiLM", "LanguageModel", "CandidateSampler", "sampled_softmax_loss", "ELMo", "ScalarMix",
           "scalar_mix", "load_pretrained_elmo", "pretrain", "perplexity", "PAD", "BOUNDARY", "UNK"]
