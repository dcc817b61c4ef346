"""Label-word scoring on a tiny random Qwen2 with a byte-level BPE tokenizer trained here (no download): the scores
are the log-softmax of the model's own logits computed by hand, for one-token and for multi-token label words, and a
row's scores do not depend on the batch it is padded into (left or right)."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from mergeflow.data.sources.glue import glue_task
from mergeflow.errors import MergeflowError
from mergeflow.language.label_words import _sequence_scores, classify, encode_prompt, encode_words, pad_batch, score_label_words

SST2 = glue_task("sst2")
SENTENCES = ["a great movie", "dull and far too long", "the plot is thin but the cast is great fun to watch", "bad"]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2-style byte-level BPE: a leading space is part of the next word's first token (" positive")."""
    corpus = [SST2.render({"sentence": s}) + f" {word}" for s in SENTENCES for word in SST2.label_words] * 20
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=330, special_tokens=["<|endoftext|>"], show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


@pytest.fixture(scope="module")
def model(tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=128, attention_dropout=0.1, tie_word_embeddings=True)
    return Qwen2ForCausalLM(config).eval()


@pytest.fixture(scope="module")
def gpt2(tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    """Absolute position embeddings: a left-padded row with positions counted from column 0 would score differently
    (rotary Qwen2 is blind to such a shift), so this model checks the position ids."""
    torch.manual_seed(1)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                      bos_token_id=0, eos_token_id=0)).eval()


def _prompts() -> list[str]:
    return [SST2.render({"sentence": s}) for s in SENTENCES]


def _by_hand(model: Qwen2ForCausalLM, prompt_ids: list[int], word_ids: list[int]) -> float:
    """sum_k log softmax(logits at the position before word token k)[token k], from one unpadded pass."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + word_ids])).logits[0].double()
    total = 0.0
    for k, token in enumerate(word_ids):
        row = logits[len(prompt_ids) + k - 1]
        total += float(row[token] - torch.logsumexp(row, dim=0))
    return total


def test_one_token_label_words_score_the_next_token_distribution(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast) -> None:
    words = encode_words(tokenizer, SST2.label_words)
    assert all(len(ids) == 1 for ids in words), "the tokenizer should spell ' negative' / ' positive' as one token each"
    assert tokenizer.convert_ids_to_tokens(words[1]) == ["Ġpositive"]  # the leading space is in the token
    prompt = _prompts()[0]
    scores = score_label_words(model, tokenizer, [prompt], SST2.label_words)
    expected = [_by_hand(model, encode_prompt(tokenizer, prompt), ids) for ids in words]
    torch.testing.assert_close(scores[0].double(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-5)


def test_multi_token_label_words_are_scored_exactly(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast) -> None:
    words = ("negatively unwatchable", "Neither", "positive")
    encoded = encode_words(tokenizer, words)
    assert len(encoded[0]) > 1 and len(encoded[1]) > 1 and len(encoded[2]) == 1
    scores = score_label_words(model, tokenizer, _prompts(), words, batch_size=3)
    for n, prompt in enumerate(_prompts()):
        expected = [_by_hand(model, encode_prompt(tokenizer, prompt), ids) for ids in encoded]
        torch.testing.assert_close(scores[n].double(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-5)


def test_the_one_pass_path_equals_the_exact_path(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast) -> None:
    prompts = [encode_prompt(tokenizer, p) for p in _prompts()]
    words = encode_words(tokenizer, SST2.label_words)
    fast = score_label_words(model, tokenizer, _prompts(), SST2.label_words)
    with torch.no_grad():
        exact = _sequence_scores(model, prompts, words, 2, "right")
    torch.testing.assert_close(fast, exact, rtol=0, atol=1e-5)


@pytest.mark.parametrize("architecture", ["qwen2", "gpt2"])
@pytest.mark.parametrize("words", [("negative", "positive"), ("negatively unwatchable", "positive")], ids=["one-token", "multi-token"])
def test_padding_does_not_change_a_rows_scores(request: pytest.FixtureRequest, tokenizer: PreTrainedTokenizerFast,
                                               words: tuple[str, ...], architecture: str) -> None:
    model = request.getfixturevalue("model" if architecture == "qwen2" else "gpt2")
    alone = torch.cat([score_label_words(model, tokenizer, [p], words) for p in _prompts()])
    lengths = {len(encode_prompt(tokenizer, p)) for p in _prompts()}
    assert len(lengths) == len(_prompts()), "the prompts should have different lengths, so batches pad"
    for side in ("left", "right"):
        batched = score_label_words(model, tokenizer, _prompts(), words, batch_size=4, padding_side=side)
        torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)
    tokenizer.padding_side = "left"  # the tokenizer's own side is used when none is given
    try:
        torch.testing.assert_close(score_label_words(model, tokenizer, _prompts(), words), alone, rtol=0, atol=1e-5)
    finally:
        tokenizer.padding_side = "right"


def test_pad_batch_masks_and_counts_positions_from_each_rows_first_token() -> None:
    ids, mask, positions, starts = pad_batch([[5, 6, 7], [8]], "left", pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0]] and starts.tolist() == [0, 2]
    ids, mask, positions, starts = pad_batch([[5, 6, 7], [8]], "right", pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and positions.tolist()[1][0] == 0 and starts.tolist() == [0, 0]


def test_scores_are_deterministic_in_train_mode_and_the_mode_is_restored(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast) -> None:
    model.train()  # attention dropout 0.1 would make scores random
    try:
        first = score_label_words(model, tokenizer, _prompts(), SST2.label_words)
        assert model.training
        assert torch.equal(first, score_label_words(model, tokenizer, _prompts(), SST2.label_words))
    finally:
        model.eval()
    assert torch.equal(classify(model, tokenizer, _prompts(), SST2.label_words), first.argmax(dim=1))


def test_a_trailing_space_in_the_prompt_moves_onto_the_word(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast) -> None:
    plain = score_label_words(model, tokenizer, _prompts(), SST2.label_words)
    spaced = score_label_words(model, tokenizer, [p + " " for p in _prompts()], SST2.label_words)
    assert torch.equal(plain, spaced)
    with pytest.raises(MergeflowError, match="different whitespace"):
        score_label_words(model, tokenizer, [_prompts()[0], _prompts()[1] + "\n"], SST2.label_words)


def test_unusable_label_words_are_refused(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(MergeflowError, match="at least two label words"):
        score_label_words(model, tokenizer, _prompts(), ["positive"])
    with pytest.raises(MergeflowError, match="not distinct"):
        score_label_words(model, tokenizer, _prompts(), ["positive", " positive"])
    with pytest.raises(MergeflowError, match="empty prompt"):
        score_label_words(model, tokenizer, [""], SST2.label_words)


class _CountingLogits(torch.nn.Module):
    """The model as it is, recording how many columns each pass projected onto the vocabulary."""

    def __init__(self, inner: Qwen2ForCausalLM) -> None:
        super().__init__()
        self.inner = inner
        self.widths: list[tuple[int, int]] = []  # (sequence length, logits columns)

    def forward(self, input_ids: torch.Tensor, logits_to_keep: int | torch.Tensor = 0, **kwargs: object):
        output = self.inner(input_ids=input_ids, logits_to_keep=logits_to_keep, **kwargs)
        self.widths.append((input_ids.shape[1], output.logits.shape[1]))
        return output


class _FullLogitsOnly(torch.nn.Module):
    """A causal LM whose forward has no ``logits_to_keep``: every column comes back."""

    def __init__(self, inner: Qwen2ForCausalLM) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor, **kwargs: object):
        return self.inner(input_ids=input_ids, **kwargs)


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("words", [("negative", "positive"), ("negatively unwatchable", "positive")], ids=["one-token", "multi-token"])
def test_only_the_columns_read_are_projected_and_the_scores_do_not_change(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerFast,
                                                                         side: str, words: tuple[str, ...]) -> None:
    counting = _CountingLogits(model)
    kept = score_label_words(counting, tokenizer, _prompts(), words, batch_size=2, padding_side=side)
    full = score_label_words(_FullLogitsOnly(model), tokenizer, _prompts(), words, batch_size=2, padding_side=side)
    torch.testing.assert_close(kept, full, rtol=0, atol=1e-6)
    assert all(columns < length for length, columns in counting.widths), counting.widths
    if words[0] == "negative" and side == "left":  # every row's last token is the last column
        assert {columns for _, columns in counting.widths} == {1}
