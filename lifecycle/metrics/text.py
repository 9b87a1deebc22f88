"""Text metrics: ROUGE, BLEU, GLEU, SQuAD exact match and token F1, WER, readability,
compression, redundancy, semantic similarity and consistency.

The reference libraries do the per-record work once per file (rouge-score, sacrebleu, nltk,
jiwer, textstat); the bootstrap resamples the per-record results they produce.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping
from importlib.metadata import version

import numpy as np

from . import readability, semantic
from .bootstrap import Additive, Statistic, Unit, cluster_counts, mean_of, undefined
from .context import Builder, Context, Result

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
BLEU_ORDER = 4
GLEU_ORDERS = (1, 4)


# --- SQuAD (the official evaluation script's normalisation) -------------------------------

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
SQUAD_NORMALISATION = (
    "SQuAD: lower case, remove ASCII punctuation, remove a/an/the, collapse whitespace"
)


def squad_normalise(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def squad_f1(reference: str, output: str) -> float:
    """Token-overlap F1 as in the SQuAD 2.0 script (two empty answers score 1)."""
    gold, pred = squad_normalise(reference).split(), squad_normalise(output).split()
    if not gold or not pred:
        return float(gold == pred)
    same = sum((Counter(gold) & Counter(pred)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


# --- per-record results, computed once per file ---------------------------------------------


def _pairs(ctx: Context) -> tuple[list[str], list[str]]:
    return ctx.texts("reference"), ctx.texts("output")


def _rouge(ctx: Context) -> dict[str, np.ndarray]:
    def compute() -> dict[str, np.ndarray]:
        from rouge_score.rouge_scorer import RougeScorer

        types = [key for key in ROUGE_TYPES if key in ctx.metrics]
        scorer = RougeScorer(types, use_stemmer=True)
        references, outputs = _pairs(ctx)
        pairs = ctx.each(zip(references, outputs, strict=True), "rouge")
        scores = [scorer.score(r, o) for r, o in pairs]
        ctx.normalisation["rouge"] = (
            f"rouge-score {version('rouge-score')} RougeScorer({types}, use_stemmer=True), "
            "F-measure per record, mean"
        )
        return {t: np.array([s[t].fmeasure for s in scores], dtype=np.float64) for t in types}

    return ctx.once("rouge", compute)


def _bleu_metric():
    from sacrebleu.metrics import BLEU

    return BLEU()


def _bleu_stats(ctx: Context) -> np.ndarray:
    """sacrebleu's per-segment statistics: hyp length, ref length, correct 1..4, total 1..4."""

    def compute() -> np.ndarray:
        bleu = _bleu_metric()
        references, outputs = _pairs(ctx)
        # In slices, to report progress between them; the statistics are per segment.
        stats = [
            segment
            for part in ctx.batches(ctx.n, "bleu")
            for segment in bleu._extract_corpus_statistics(outputs[part], [references[part]])
        ]
        ctx.normalisation["bleu"] = bleu.get_signature().format()
        return np.array(stats, dtype=np.float64).reshape(len(outputs), 2 + 2 * BLEU_ORDER)

    return ctx.once("bleu", compute)


def bleu_from_totals(t: Mapping[str, np.ndarray]) -> np.ndarray:
    """sacrebleu's compute_bleu (smooth_method="exp", no effective order), vectorised."""
    sys_len, ref_len = t["sys_len"], t["ref_len"]
    correct = np.stack([t[f"correct{i}"] for i in range(BLEU_ORDER)], axis=-1)
    total = np.stack([t[f"total{i}"] for i in range(BLEU_ORDER)], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        bp = np.where(
            sys_len < ref_len,
            np.where(sys_len > 0, np.exp(1 - ref_len / sys_len), 0.0),
            1.0,
        )
        smooth = np.ones_like(sys_len)
        active = np.ones_like(sys_len, dtype=bool)
        log_sum = np.zeros_like(sys_len)
        for i in range(BLEU_ORDER):
            active = active & (total[..., i] != 0)
            zero = correct[..., i] == 0
            smooth = np.where(active & zero, smooth * 2, smooth)
            precision = np.where(
                active,
                np.where(
                    zero, 100.0 / (smooth * total[..., i]), 100.0 * correct[..., i] / total[..., i]
                ),
                0.0,
            )
            log_sum = log_sum + np.where(precision == 0, -9999999999.0, np.log(precision))
        score = bp * np.exp(log_sum / BLEU_ORDER)
    return np.where((correct == 0).all(axis=-1), 0.0, score)


def _gleu_counts(ctx: Context) -> np.ndarray:
    """Per record (matching n-grams, max(hypothesis n-grams, reference n-grams)) as nltk's
    corpus_gleu accumulates them for one reference, on whitespace tokens."""

    def compute() -> np.ndarray:
        from nltk.util import everygrams

        low, high = GLEU_ORDERS
        out = np.zeros((ctx.n, 2), dtype=np.float64)
        for i, (reference, output) in enumerate(ctx.each(zip(*_pairs(ctx), strict=True), "gleu")):
            hyp = Counter(everygrams(output.split(), low, high))
            ref = Counter(everygrams(reference.split(), low, high))
            n_all = max(sum(hyp.values()), sum(ref.values()))
            if n_all > 0:
                out[i] = (sum((ref & hyp).values()), n_all)
        ctx.normalisation["gleu"] = (
            f"nltk {version('nltk')} corpus_gleu(min_len={low}, max_len={high}) on "
            "whitespace tokens"
        )
        return out

    return ctx.once("gleu", compute)


def _squad(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    def compute() -> tuple[np.ndarray, np.ndarray]:
        references, outputs = _pairs(ctx)
        em, f1 = np.zeros(ctx.n), np.zeros(ctx.n)
        for i, (r, o) in enumerate(ctx.each(zip(references, outputs, strict=True), "squad")):
            em[i], f1[i] = squad_normalise(r) == squad_normalise(o), squad_f1(r, o)
        ctx.normalisation["exact_match"] = SQUAD_NORMALISATION
        return em, f1

    return ctx.once("squad", compute)


def _wer(ctx: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per record (errors, reference words) from jiwer's alignment; records whose reference
    is empty are left out (jiwer refuses them)."""

    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import jiwer

        references, outputs = _pairs(ctx)
        usable = np.array([bool(r.strip()) for r in references], dtype=bool)
        errors = np.zeros(ctx.n)
        words = np.zeros(ctx.n)
        kept = np.flatnonzero(usable)
        # In slices, to report progress between them; the alignments are per pair.
        alignments = []
        for part in ctx.batches(kept.size, "wer"):
            result = jiwer.process_words(
                [references[i] for i in kept[part]], [outputs[i] for i in kept[part]]
            )
            alignments += result.alignments
        for i, chunks in zip(kept, alignments, strict=True):
            for chunk in chunks:
                ref_span = chunk.ref_end_idx - chunk.ref_start_idx
                if chunk.type == "equal":
                    words[i] += ref_span
                elif chunk.type in ("substitute", "delete"):
                    words[i] += ref_span
                    errors[i] += ref_span
                else:  # insert
                    errors[i] += chunk.hyp_end_idx - chunk.hyp_start_idx
        ctx.normalisation["wer"] = (
            f"jiwer {version('jiwer')} wer with its default transform, over the whole corpus"
        )
        return errors, words, usable

    return ctx.once("wer", compute)


def _readability(ctx: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        outputs = ctx.texts("output")
        usable = np.zeros(ctx.n, dtype=bool)
        grade, ease = np.full(ctx.n, np.nan), np.full(ctx.n, np.nan)
        for i, output in enumerate(ctx.each(outputs, "readability")):
            usable[i] = readability.word_count(output) > 0
            if usable[i]:
                grade[i] = readability.flesch_kincaid_grade(output)
                ease[i] = readability.flesch_reading_ease(output)
        ctx.normalisation["readability"] = readability.description()
        return grade, ease, usable

    return ctx.once("readability", compute)


def _compression(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    def compute() -> tuple[np.ndarray, np.ndarray]:
        inputs, outputs = ctx.texts("input"), ctx.texts("output")
        out_words = np.array([len(o.split()) for o in outputs], dtype=np.float64)
        in_words = np.array([len(i.split()) for i in inputs], dtype=np.float64)
        usable = out_words > 0
        ratio = np.where(usable, in_words / np.maximum(out_words, 1), np.nan)
        ctx.normalisation["compression_ratio"] = "words = whitespace-separated tokens"
        return ratio, usable

    return ctx.once("compression", compute)


_WORD = re.compile(r"\w+")


def redundancy(text: str) -> float | None:
    """1 - unique word trigrams / trigrams, or None when the text has no trigram."""
    words = _WORD.findall(text.lower())
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    if not trigrams:
        return None
    return 1 - len(set(trigrams)) / len(trigrams)


def _redundancy(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    def compute() -> tuple[np.ndarray, np.ndarray]:
        values = [redundancy(o) for o in ctx.each(ctx.texts("output"), "redundancy")]
        usable = np.array([v is not None for v in values], dtype=bool)
        ctx.normalisation["redundancy_rate"] = r"words = \w+ in lower case; word trigrams"
        return np.array([np.nan if v is None else v for v in values]), usable

    return ctx.once("redundancy", compute)


def _semantic(ctx: Context) -> np.ndarray:
    def compute() -> np.ndarray:
        references, outputs = _pairs(ctx)
        values = np.concatenate(
            [
                semantic.similarities(references[part], outputs[part])
                for part in ctx.batches(ctx.n, "semantic similarity")
            ]
            or [np.zeros(0)]
        )
        ctx.normalisation["semantic_similarity"] = semantic.description()
        ctx.libraries.update({"sentence-transformers", "torch", semantic.PACKAGE})
        return values

    return ctx.once("semantic", compute)


# --- builders -------------------------------------------------------------------------------


def _excluded_note(usable: np.ndarray, what: str) -> list[str]:
    left_out = int((~usable).sum())
    return [f"{left_out} record(s) left out: {what}"] if left_out else []


def _mean_over(values: np.ndarray, usable: np.ndarray, unit: Unit, what: str, reason: str):
    keep = usable[unit.indices]
    stat = mean_of(values[unit.indices], keep, n_reason=reason)
    stat.warnings.extend(_excluded_note(keep, what))
    return stat


def build(ctx: Context, key: str, unit: Unit) -> Result:
    idx = unit.indices
    if idx.size == 0:
        return undefined("no records")
    if key in ROUGE_TYPES:
        return mean_of(_rouge(ctx)[key][idx])
    if key == "bleu":
        return _bleu(ctx, unit)
    if key == "gleu":
        counts = _gleu_counts(ctx)[idx]
        return Additive(
            {"match": counts[:, 0], "all": counts[:, 1]},
            lambda t: t["match"] / t["all"],
            n=int(idx.size),
            reason_if_undefined="no output or reference has a token: GLEU is undefined",
        )
    if key in ("exact_match", "token_f1"):
        em, f1 = _squad(ctx)
        return mean_of((em if key == "exact_match" else f1)[idx])
    if key == "wer":
        return _wer_statistic(ctx, unit)
    if key in ("flesch_kincaid_grade", "flesch_reading_ease"):
        grade, ease, usable = _readability(ctx)
        values = grade if key == "flesch_kincaid_grade" else ease
        return _mean_over(values, usable, unit, "output has no words", "no output has words")
    if key == "compression_ratio":
        ratio, usable = _compression(ctx)
        return _mean_over(ratio, usable, unit, "output has no words", "no output has words")
    if key == "redundancy_rate":
        values, usable = _redundancy(ctx)
        return _mean_over(
            values, usable, unit, "output has no word trigram", "no output has a word trigram"
        )
    if key == "semantic_similarity":
        if not semantic.available():
            return undefined(semantic.INSTALL_HINT)
        return mean_of(_semantic(ctx)[idx])
    if key == "consistency":
        return _consistency(ctx, unit)
    raise KeyError(key)


def _bleu(ctx: Context, unit: Unit) -> Statistic:
    stats = _bleu_stats(ctx)[unit.indices]
    names = ["sys_len", "ref_len"]
    names += [f"correct{i}" for i in range(BLEU_ORDER)]
    names += [f"total{i}" for i in range(BLEU_ORDER)]
    totals = [int(x) for x in stats.sum(axis=0)]
    value = float(_bleu_metric()._compute_score_from_stats(totals).score)
    return Additive(
        {name: stats[:, i] for i, name in enumerate(names)},
        bleu_from_totals,
        n=int(stats.shape[0]),
        reason_if_undefined="BLEU is undefined",
        value=value,
    )


def _wer_statistic(ctx: Context, unit: Unit) -> Statistic:
    # jiwer's corpus WER is (S + D + I) / (H + S + D) summed over pairs: integer totals, so
    # the ratio of the per-record sums below is exactly jiwer's number.
    errors, words, usable = _wer(ctx)
    keep = unit.indices[usable[unit.indices]]
    if keep.size == 0:
        return undefined("every reference is empty: WER is undefined")
    stat = Additive(
        {"errors": errors[unit.indices], "words": words[unit.indices]},  # 0 where left out
        lambda t: t["errors"] / t["words"],
        n=int(keep.size),
        reason_if_undefined="every reference is empty: WER is undefined",
    )
    stat.warnings.extend(_excluded_note(usable[unit.indices], "reference is empty"))
    return stat


class Consistency(Statistic):
    """Share of prompt_ids (with 2+ records) whose answers all agree; resamples prompt_ids."""

    own_resampling = True

    def __init__(self, agree: np.ndarray):
        super().__init__(value=float(np.mean(agree)), n=int(agree.size))
        self.agree = agree

    def own_replicates(self, seed: int, start: int, stop: int) -> np.ndarray:
        counts = cluster_counts(seed, self.agree.size, start, stop)
        return counts @ self.agree / counts.sum(axis=1)


def _consistency(ctx: Context, unit: Unit) -> Statistic:
    uses_output = ctx.dataset.has("output")
    answers = (
        [squad_normalise(o) for o in ctx.texts("output")]
        if uses_output
        else ctx.dataset.column("prediction")
    )
    ctx.normalisation["consistency"] = (
        f"outputs compared after {SQUAD_NORMALISATION}" if uses_output else "predictions compared"
    )
    prompts = ctx.dataset.column("prompt_id")
    seen: dict[str, list[object]] = {}
    for i in unit.indices:
        seen.setdefault(prompts[i], []).append(answers[i])
    agree = np.array(
        [len(set(group)) == 1 for _, group in sorted(seen.items()) if len(group) >= 2],
        dtype=np.float64,
    )
    if agree.size == 0:
        return undefined("no prompt_id has two or more records")
    return Consistency(agree)


BUILDERS: dict[str, Builder] = {
    key: build
    for key in (
        *ROUGE_TYPES,
        "bleu",
        "gleu",
        "exact_match",
        "token_f1",
        "wer",
        "flesch_kincaid_grade",
        "flesch_reading_ease",
        "compression_ratio",
        "redundancy_rate",
        "semantic_similarity",
        "consistency",
    )
}
