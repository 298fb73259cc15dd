"""ULMFiT (Howard & Ruder 2018): universal language model fine-tuning for text classification.

Chapter: "Transfer learning in NLP", ULMFiT. Three stages:

1. **A general-domain language model.** Here the forward LM of ELMo's biLM, pretrained on GCIDE
   (`tl.elmo.load_pretrained_elmo`, `minitl pretrain elmo`): embedding -> 2 LSTM layers ->
   softmax over the vocabulary. The two sequence methods of the chapter share one pretraining.
2. **LM fine-tuning on the target task's text** (unlabelled: every training definition of the
   task, never a label), with discriminative learning rates and slanted triangular ones. The
   task's texts mask the headword as "[MASK]", a word the pretrained LM never saw: it joins the
   vocabulary with the mean of the pretrained embeddings and softmax rows (fastai's habit for
   new words), and the LM learns it here.
3. **Classifier fine-tuning.** The LM's softmax is dropped (`encoder.decoder = nn.Identity()`,
   PyTorch's idiom for removing a head) and a small head reads *concat pooling* of the top
   LSTM layer's outputs H = (h_1 .. h_T) over the real (unpadded) steps of each text,

       h_c = [h_T, maxpool(H), meanpool(H)]                                   (`concat_pool`)

   then trains with the three ideas of the paper, each in `minitl.transfer` or
   `minitl.optim.lr_scheduler`, used here, not copied:

   - discriminative learning rates: eta^{l-1} = eta^l / 2.6, one rate per layer group
     (`transfer.discriminative_param_groups`);
   - slanted triangular learning rates (`optim.lr_scheduler.slanted_triangular`,
     cut_frac 0.1, ratio 32): a short linear rise to eta_max, then a long linear decay;
   - gradual unfreezing: the head alone first, then one more layer group per stage, all in
     one Adam whose moments carry over (`transfer.gradual_unfreezing`). A stage takes the
     paper's epoch's place: the step budget is shared equally by the stages.

    lm, vocab, info = load_finetuned_lm(texts=data.train.texts)   # stages 1-2, cached
    model = classifier_from_lm(lm, num_classes=4)                  # stage 3
    fine_tune_classifier(model, encode(texts, vocab), labels, steps=100)

The inputs of the LM and the classifier are ids (B, T), each row `<s> t_1 .. t_n <s>` padded at
the end with <pad> (id 0), as the biLM was pretrained on; the lengths are read off the padding.
`minitl experiment ulmfit` (minitl/experiments/ulmfit.py) measures the pipeline against the same
classifier trained from scratch and against each idea left out.
"""
from __future__ import annotations

import time
from functools import partial

import numpy as np

from . import nn, ops, optim, transfer
from .data import cache_dir
from .data.text import Vocab
from .data.text.gcide_tasks import MASK_TOKEN
from .elmo.bilm import CandidateSampler, LanguageModel, sampled_softmax_loss
from .elmo.data import BOUNDARY_ID, PAD_ID, encode_sentences
from .random import fork_rng, manual_seed
from .serialization import CheckpointError, load, save
from .tensor import Tensor, no_grad

RECIPE = "v1"  # part of the cached fine-tuned LM's file name

# LM fine-tuning (stage 2). A step reads batch_size windows of bptt tokens of the task's text
# stream and scores each next word against num_sampled words drawn by frequency (ELMo's sampled
# softmax: the full one over 20,000 words would cost ten times as much). `steps` is sized in
# minitl/experiments/ulmfit.py's budget.
LM_FINETUNE = dict(steps=500, batch_size=32, bptt=32, lr=2e-3, decay=2.6, cut_frac=0.1, ratio=32, dropout=0.1,
                   clip=1.0, num_sampled=1024, held_out_tokens=20_000, seed=0)
LM_FINETUNE_FAST = dict(LM_FINETUNE, steps=30, batch_size=16, lr=5e-3, num_sampled=256, held_out_tokens=2_000)

# The classifier's head: ULMFiT's is two linear layers with 50 units between them.
HEAD_HIDDEN = 50


# --- stage 1: the pretrained language model ----------------------------------------------------

def copy_language_model(lm, dropout=None):
    """A LanguageModel of its own with `lm`'s weights (ELMo's forward LM shares its embedding and
    softmax with the backward LM; the copy owns them, so fine-tuning it changes nothing else)."""
    vocab_size, hidden = lm.embedding.weight.shape
    copy = LanguageModel(nn.Embedding(vocab_size, hidden), nn.Linear(hidden, vocab_size), len(lm.layers),
                         reverse=lm.reverse, dropout=lm.dropout if dropout is None else dropout)
    copy.load_state_dict(lm.state_dict())
    return copy


def load_pretrained_lm(fast=False, progress=True):
    """(lm, vocab, info): a copy of the forward LM of ELMo's pretrained biLM, its vocabulary,
    and the biLM's record (`info["perplexity"]["forward"]` is this LM's held-out perplexity).
    Trains the biLM first when the cache has none (`minitl pretrain elmo`)."""
    from .elmo.pretraining import load_pretrained_elmo
    bilm, vocab = load_pretrained_elmo(fast=fast, progress=progress)
    return copy_language_model(bilm.forward_lm), vocab, bilm.info


def add_words(lm, vocab, words):
    """(lm', vocab'): `lm` and `vocab` with the `words` the vocabulary lacks appended, each
    with the mean of the pretrained embedding rows and of the softmax's rows and biases (a
    new word starts as an average word, not as noise). The other weights are copied."""
    new = [w for w in dict.fromkeys(words) if w not in vocab.word_to_id]
    vocab_size, hidden = lm.embedding.weight.shape
    grown = LanguageModel(nn.Embedding(vocab_size + len(new), hidden), nn.Linear(hidden, vocab_size + len(new)),
                          len(lm.layers), reverse=lm.reverse, dropout=lm.dropout)
    state = dict(lm.state_dict())
    for key in ("embedding.weight", "decoder.weight", "decoder.bias"):
        old = np.asarray(state[key].data if isinstance(state[key], Tensor) else state[key])
        state[key] = np.concatenate([old, np.repeat(old.mean(axis=0, keepdims=True), len(new), axis=0)])
    grown.load_state_dict(state)
    counts = np.concatenate([vocab.counts, np.zeros(len(new), dtype=vocab.counts.dtype)])
    return grown, Vocab(list(vocab.id_to_word) + new, counts, unk=vocab.unk)


def encode(texts, vocab, max_tokens=None):
    """Token lists -> ids (N, T) int64, each row `<s> t_1 .. t_n <s>` padded with <pad> (id 0),
    T = the longest n + 2. Words not in `vocab` become <unk>; `max_tokens` keeps the first ones."""
    if max_tokens is not None:
        texts = [t[:max_tokens] for t in texts]
    if not texts or any(len(t) == 0 for t in texts):
        raise ValueError("ulmfit.encode: every text needs at least one token")
    sentences = encode_sentences(texts, vocab)
    ids, _ = sentences.batch(np.arange(len(sentences)))
    return ids


def lengths_of(ids):
    """The real length of each row of padded ids (B, T): padding is <pad> (id 0) at the end."""
    lengths = (ids != PAD_ID).sum(axis=1)
    if len(lengths) and lengths.min() == 0:
        raise ValueError("ulmfit: a row of ids holds only padding; every text needs <s> and its tokens")
    return lengths


def _ids_array(ids):
    arr = ids.data if isinstance(ids, Tensor) else np.asarray(ids)
    if arr.ndim != 2 or arr.dtype.kind not in "iu":
        raise ValueError(f"ulmfit: ids must be a 2-D integer array (batch, steps), got dtype {arr.dtype} "
                         f"and shape {tuple(arr.shape)}")
    return arr.astype(np.int64, copy=False)


# --- stage 2: LM fine-tuning on the task's text ------------------------------------------------

def text_stream(texts, vocab):
    """The texts as one stream of ids, each text after a <s>, and a closing <s>: the LM reads
    across text boundaries, predicting <s> at the end of each text, as in pretraining."""
    sentences = encode_sentences(texts, vocab)
    stream = np.full(sentences.n_tokens + len(sentences) + 1, BOUNDARY_ID, dtype=np.int64)
    starts = sentences.offsets[:-1] + np.arange(len(sentences)) + 1   # each text's first token
    within = np.arange(sentences.n_tokens) - np.repeat(sentences.offsets[:-1], sentences.lengths)
    stream[np.repeat(starts, sentences.lengths) + within] = sentences.ids
    return stream


def lm_windows(stream, bptt):
    """Inputs and targets (N, bptt): consecutive windows of the stream, each target the next id."""
    n = (len(stream) - 1) // bptt
    if n < 1:
        raise ValueError(f"ulmfit: a stream of {len(stream)} ids holds no window of {bptt} + 1")
    x = stream[:n * bptt].reshape(n, bptt)
    y = stream[1:n * bptt + 1].reshape(n, bptt)
    return x, y


class NextWordStates(nn.Module):
    """The LM without its softmax: ids (B, T) -> the top layer's states (B * T, H), one row per
    position, each to be scored against the next word by a (sampled) softmax. Its blocks, for
    discriminative rates, are the LM's from the input up: embedding, each LSTM layer, softmax."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def blocks(self):
        return [self.lm.embedding, *self.lm.layers, self.lm.decoder]

    def forward(self, ids):
        top = self.lm.hidden_states(_ids_array(ids))[-1]               # (T, B, H)
        top = ops.dropout(top, self.lm.dropout, self.training)
        return ops.reshape(ops.transpose(top, 0, 1), (-1, self.lm.hidden_size))


def sampled_lm_loss(lm, sampler):
    """loss_fn(states (B * T, H), targets (B, T)): the mean sampled-softmax NLL of the next words."""
    def loss(states, targets):
        targets = _ids_array(targets).reshape(-1)
        return sampled_softmax_loss(states, targets, lm.decoder.weight, lm.decoder.bias, sampler)
    return loss


@no_grad()
def lm_loss(lm, x, y, batch_size=64):
    """Mean full-softmax NLL per predicted word of `lm` on windows x -> y (exp of it: perplexity)."""
    was_training = lm.training
    lm.eval()
    total = 0.0
    for i in range(0, len(x), batch_size):
        logits = lm(x[i:i + batch_size])                                 # (B, T, V)
        total += float(ops.cross_entropy(ops.reshape(logits, (-1, logits.shape[-1])),
                                         y[i:i + batch_size].reshape(-1), reduction="sum").item())
    lm.train(was_training)
    return total / y.size


def fine_tune_lm(lm, train_stream, held_out_stream=None, config=None, progress=False):
    """Stage 2: fine-tune `lm` in place on a stream of the task's text (ids). Discriminative rates
    over the LM's groups (embedding, each LSTM layer, softmax: each 2.6 times slower than the one
    above) and one slanted triangular schedule over `config["steps"]` Adam steps; the sampled
    softmax draws its words by their frequency in `train_stream`. Returns a record: the config,
    held-out LM loss before and after (full softmax, when `held_out_stream` is given), the loss
    curve, wall and CPU seconds."""
    config = dict(LM_FINETUNE, **(config or {}))
    manual_seed(config["seed"])
    x, y = lm_windows(train_stream, config["bptt"])
    held = None
    if held_out_stream is not None:
        hx, hy = lm_windows(held_out_stream[:config["held_out_tokens"] + 1], config["bptt"])
        held = (hx, hy)
    record = {"config": config}
    if held:
        record["held_out_loss_before"] = lm_loss(lm, *held)
    counts = np.bincount(train_stream, minlength=lm.embedding.weight.shape[0])
    sampler = CandidateSampler(np.maximum(counts, 0), config["num_sampled"], rng=fork_rng())
    model = NextWordStates(lm)
    transfer.unfreeze(model)
    optimizer = optim.Adam(transfer.discriminative_param_groups(model, config["lr"], config["decay"]),
                           lr=config["lr"])
    schedule = optim.lr_scheduler.slanted_triangular(optimizer, config["steps"], config["cut_frac"], config["ratio"])
    losses = []
    loss_fn = sampled_lm_loss(lm, sampler)

    def recorded(states, targets):
        loss = loss_fn(states, targets)
        losses.append(float(loss.item()))
        return loss

    wall, cpu = time.perf_counter(), time.process_time()
    transfer.train_steps(model, transfer.make_loader(x, y, config["batch_size"]), optimizer, steps=config["steps"],
                         scheduler=schedule, loss_fn=recorded, max_grad_norm=config["clip"], progress=progress)
    record.update(seconds=time.perf_counter() - wall, cpu_seconds=time.process_time() - cpu,
                  train_tokens=config["steps"] * config["batch_size"] * config["bptt"],
                  stream_tokens=int(len(train_stream)), losses=np.asarray(losses, dtype=np.float32))
    if not np.isfinite(losses).all():
        raise FloatingPointError("ULMFiT LM fine-tuning: the loss became infinite or NaN; lower the learning rate")
    if held:
        record["held_out_loss_after"] = lm_loss(lm, *held)
        record["held_out_tokens"] = int(held[1].size)
    return record


def finetuned_lm_path(fast=False):
    return cache_dir("weights") / f"ulmfit_lm_gcide_pos_{RECIPE}{'_fast' if fast else ''}.npz"


def _source_stamp(fast):
    """What the fine-tuned LM was made from: the pretrained biLM's file, its size and time (a
    retrained biLM makes the cache stale)."""
    from .elmo.pretraining import weights_path
    path = weights_path(fast)
    stat = path.stat()
    return {"file": path.name, "bytes": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


def _texts_stamp(texts):
    """[number of texts, number of tokens]: another task text makes the cache stale."""
    return [len(texts), sum(len(t) for t in texts)]


def save_finetuned_lm(lm, vocab, record, path):
    save({"weights": lm.state_dict(), "num_layers": len(lm.layers), "vocab": list(vocab.id_to_word),
          "counts": vocab.counts, "record": record}, path)


def read_finetuned_lm(path):
    """(lm, vocab, record) from a file of `save_finetuned_lm`."""
    state = load(path)
    missing = {"weights", "num_layers", "vocab", "counts", "record"} - set(state)
    if missing:
        raise CheckpointError(f"{path} is not a fine-tuned ULMFiT LM (missing {sorted(missing)}); delete it "
                              f"and run `minitl experiment ulmfit` again")
    vocab_size, hidden = state["weights"]["embedding.weight"].shape
    lm = LanguageModel(nn.Embedding(vocab_size, hidden), nn.Linear(hidden, vocab_size), int(state["num_layers"]))
    lm.load_state_dict(state["weights"])
    return lm, Vocab(state["vocab"], state["counts"], unk="<unk>"), dict(state["record"])


def load_finetuned_lm(texts, held_out_texts=None, fast=False, config=None, force=False, progress=True):
    """Stages 1 and 2, once: (lm, vocab, record), the pretrained LM with "[MASK]" added to its
    vocabulary, fine-tuned on `texts` (the task's unlabelled training texts). Cached under
    `cache_dir("weights")`: the LM's text does not depend on the label budget or the
    classifier's seed, so every classifier of an experiment starts from this one LM. The cache
    is remade when the pretrained biLM, the `config` or the texts (their number and tokens)
    changed, or with `force`."""
    path = finetuned_lm_path(fast)
    config = dict(LM_FINETUNE_FAST if fast else LM_FINETUNE, **(config or {}))
    if path.exists() and not force:
        lm, vocab, record = read_finetuned_lm(path)
        if (record.get("source") == _source_stamp(fast) and record.get("config") == config
                and record.get("texts") == _texts_stamp(texts)):
            return lm, vocab, record
    lm, vocab, info = load_pretrained_lm(fast=fast, progress=progress)
    lm, vocab = add_words(lm, vocab, [MASK_TOKEN])
    lm.dropout = config["dropout"]
    held_out = text_stream(held_out_texts, vocab) if held_out_texts else None
    record = fine_tune_lm(lm, text_stream(texts, vocab), held_out, config, progress=progress)
    record["pretrained_perplexity"] = float(info["perplexity"]["forward"])
    record["source"] = _source_stamp(fast)
    record["texts"] = _texts_stamp(texts)
    save_finetuned_lm(lm, vocab, record, path)
    return read_finetuned_lm(path)


# --- stage 3: the classifier --------------------------------------------------------------------

def concat_pool(outputs, lengths):
    """ULMFiT's concat pooling of the top layer's outputs H (B, T, H) over each sequence's real
    steps (lengths (B,), padding at the end): h_c = [h_T, maxpool(H), meanpool(H)], (B, 3H).
    h_T is the output at the last real step; padded steps neither win the max nor enter the mean."""
    batch, steps = outputs.shape[:2]
    lengths = np.asarray(lengths, dtype=np.int64)
    real = (np.arange(steps)[None, :] < lengths[:, None])[:, :, None]                  # (B, T, 1)
    last = outputs[np.arange(batch), lengths - 1]                                      # h_T
    max_pool = ops.max(ops.masked_fill(outputs, ~real, -np.inf), dim=1)
    mean_pool = ops.sum(outputs * Tensor(real, dtype=outputs.dtype), dim=1) / Tensor(
        lengths[:, None], dtype=outputs.dtype)
    return ops.cat([last, max_pool, mean_pool], dim=1)


class ULMFiTClassifier(nn.Module):
    """The LM's embedding and LSTM layers (`encoder`, its softmax replaced by nn.Identity), then
    concat pooling of the top layer and the paper's head of two blocks: batch norm, dropout,
    Linear(3H, 50), ReLU; batch norm, dropout, Linear(50, classes). model(ids) -> logits (B, classes); ids (B, T) padded with <pad>.

    Its layer groups (`blocks()`), from the input up: embedding, each LSTM layer, the head.
    The transfer toolkit freezes, unfreezes and sets learning rates by these groups."""

    def __init__(self, encoder, num_classes, head_hidden=HEAD_HIDDEN, dropout=0.1):
        super().__init__()
        encoder.decoder = nn.Identity()   # ULMFiT drops the LM's softmax: the head takes its place
        self.encoder = encoder
        hidden = encoder.hidden_size
        # the paper's two linear blocks, each batch norm and dropout first: the pooled states of a
        # pretrained LM sit near +-1 and vary little from text to text, and batch norm rescales
        # that variation to where a freshly initialised Linear can read it
        self.head = nn.Sequential(nn.BatchNorm1d(3 * hidden), nn.Dropout(dropout), nn.Linear(3 * hidden, head_hidden),
                                  nn.ReLU(), nn.BatchNorm1d(head_hidden), nn.Dropout(dropout),
                                  nn.Linear(head_hidden, num_classes))

    def blocks(self):
        return [self.encoder.embedding, *self.encoder.layers, self.head]

    def features(self, ids):
        """h_c = [h_T, maxpool(H), meanpool(H)] of each row of ids: what the head reads."""
        ids = _ids_array(ids)
        lengths = lengths_of(ids)
        ids = ids[:, :lengths.max()]               # no step where every row is padding
        return concat_pool(self.encoder(ids, lengths), lengths)

    def forward(self, ids):
        return self.head(self.features(ids))


def classifier_from_lm(lm, num_classes, dropout=0.1, head_hidden=HEAD_HIDDEN):
    """Stage 3's model: a copy of the (fine-tuned) LM's body under a new head."""
    return ULMFiTClassifier(copy_language_model(lm, dropout=dropout), num_classes, head_hidden, dropout)


def scratch_classifier(vocab_size, hidden_size, num_layers, num_classes, dropout=0.1, head_hidden=HEAD_HIDDEN):
    """The same classifier from random weights: the baseline ULMFiT is measured against."""
    # a one-word softmax stands in for the LM's: the classifier drops it at once
    lm = LanguageModel(nn.Embedding(vocab_size, hidden_size), nn.Linear(hidden_size, 1), num_layers, dropout=dropout)
    return ULMFiTClassifier(lm, num_classes, head_hidden, dropout)


def constant_schedule(optimizer, total_steps):
    """The ablation of STLR: the rate stays at each group's eta throughout."""
    return optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def batch_size_for_batch_norm(n, batch_size):
    """`batch_size`, or the next larger one, so that no batch of n examples holds a single one:
    batch norm cannot normalise one example by the statistics of its batch."""
    batch_size = min(batch_size, n)
    while n % batch_size == 1:
        batch_size += 1
    return batch_size


def fine_tune_classifier(model, x, y, steps, lr=1e-2, batch_size=32, discriminative=True, stlr=True, gradual=True,
                         decay=2.6, cut_frac=0.1, ratio=32):
    """Stage 3: train `model` (its groups from `blocks()`) on ids x, labels y for `steps` Adam
    steps. ULMFiT uses all three ideas; each flag leaves one out:

    - discriminative: group l's rate is eta / decay^(L - l) (else every group at eta);
    - stlr: slanted triangular rates over the steps (else a constant rate);
    - gradual: the head alone first, then one more group per stage, the steps shared equally
      by the stages, one Adam throughout (else every group trains from the first step).
    """
    if len(x) < 2:
        raise ValueError(f"fine_tune_classifier: the head's batch norm needs at least 2 training examples, got {len(x)}")
    batch_size = batch_size_for_batch_norm(len(x), batch_size)
    decay = decay if discriminative else 1.0
    schedule = partial(optim.lr_scheduler.slanted_triangular, cut_frac=cut_frac, ratio=ratio) if stlr \
        else constant_schedule
    if gradual:
        return transfer.gradual_unfreezing(model, x, y, steps=steps, lr=lr, decay=decay, batch_size=batch_size,
                                           head="head", schedule=schedule)
    transfer.unfreeze(model)
    optimizer = optim.Adam(transfer.discriminative_param_groups(model, lr, decay), lr=lr)
    return transfer.train_steps(model, transfer.make_loader(x, y, batch_size), optimizer, steps=steps,
                                scheduler=schedule(optimizer, steps))


@no_grad()
def predict(model, ids, batch_size=256):
    """Class predictions for ids (N, T) in eval mode, without a graph. Rows are batched by length
    (each batch cut to its longest row), so short texts cost short runs; the order is kept."""
    ids = _ids_array(ids)
    model.eval()
    order = np.argsort(lengths_of(ids), kind="stable")
    out = np.empty(len(ids), dtype=np.int64)
    for i in range(0, len(ids), batch_size):
        rows = order[i:i + batch_size]
        out[rows] = model(ids[rows]).data.argmax(axis=-1)
    return out


def accuracy(model, ids, labels, batch_size=256):
    return float((predict(model, ids, batch_size) == np.asarray(labels)).mean())


def stratified_sample(labels, n, seed):
    """Indices of n examples drawn at random (seeded) with each class's share of `labels` kept
    (largest remainders), in random order: a small labelled budget with the task's balance."""
    labels = np.asarray(labels)
    if not 1 <= n <= len(labels):
        raise ValueError(f"stratified_sample: n must lie in 1..{len(labels)}, got {n}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    quota = np.floor(exact).astype(np.int64)
    quota[np.argsort(-(exact - quota), kind="stable")[:n - quota.sum()]] += 1
    picks = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota)]
    return rng.permutation(np.concatenate(picks))


__all__ = ["load_pretrained_lm", "copy_language_model", "add_words", "encode", "text_stream", "lm_windows",
           "fine_tune_lm", "load_finetuned_lm", "lm_loss", "concat_pool", "ULMFiTClassifier", "classifier_from_lm",
           "scratch_classifier", "fine_tune_classifier", "predict", "accuracy", "stratified_sample"]
