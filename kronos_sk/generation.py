"""Batched, cached sampling of Kronos token paths, decoded back to candles.

`forecast_paths` is the whole forecasting procedure: normalise each context with its own
statistics, tokenize it, sample `n_samples` token paths per series with a key/value cache,
decode them and undo the normalisation. Every path is returned, made valid by
`make_candles_valid` (the decoder does not know that high bounds open and close), with
positive prices: a path with a price <= 0 is drawn again from its own seed, so that paths
follow the model's distribution conditioned on positive prices (`_redraw_nonpositive`).
`valid_candles=False` returns the reference's raw decoding instead.

The paths of a series are drawn stratified by default (`path_uniforms`): each path alone is
an exact draw of the model, but at each step the paths of a series take one uniform from
each of `n_samples` equal strata of [0, 1), the ids laid out by the close they decode to
(`ids_by_close`), so that the paths cover the model's distribution evenly: the mean of 20
paths moves less from seed to seed, and their quantiles are closer to the model's
(`stratified=False`: independent paths, as the reference samples them).

The samples of a series share its context: its keys and values are computed and stored once
per series (`SharedPrefixCache`), and each path adds only its own generated tokens.

Sliding windows: once a context plus the generated tokens outgrow `max_context`, the released
predictor re-runs the whole window (positions restarting at 0) at each step. `sliding="exact"`
(default) keeps those semantics, sharing the window's context part across the samples of a
series; `sliding="rolling"` keeps the cache and drops its oldest entries instead, which is
faster but approximate: hidden states keep what dropped tokens contributed.
"""

from __future__ import annotations

import hashlib
import warnings
import weakref
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import torch

from kronos_sk._defaults import DEFAULT_N_SAMPLES, DEFAULT_TOP_P
from kronos_sk._params import check_positive_int
from kronos_sk.calibration import apply_spread
from kronos_sk.checkpoints import Spread
from kronos_sk.data.normalize import DEFAULT_CLIP, Normalizer, check_model_space
from kronos_sk.data.schema import FEATURE_COLUMNS
from kronos_sk.data.validation import make_candles_valid
from kronos_sk.nn.layers import KVCache, SharedPrefixCache, attention_mask
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer, ids_to_bits
from kronos_sk.runtime import resolve_dtype

SLIDING_MODES = ("exact", "rolling")
DEFAULT_MAX_PATHS = 256
MIN_CONTEXT_ROWS = 2
# The tokenizer attends over the whole context (released behaviour); beyond this many times
# the predictor's window, contexts are cut to their last rows (with a warning) so that its
# attention stays affordable. The predictor itself only sees the last max_context tokens.
CONTEXT_LIMIT_FACTOR = 8
# Top-p looks for the nucleus among this many most likely ids first (see `nucleus`): with
# the bundled model, top_p = 0.9 keeps at most 53 coarse and 31 fine ids on real candles.
NUCLEUS_CANDIDATES = 64
# The positive-price rule: redraws of a path with a price <= 0 before it is replaced by an
# accepted path of its series, and the share of redrawn paths above which a series warns.
MAX_REDRAWS = 8
REDRAW_WARNING_SHARE = 0.05
# The fine ids are ordered by their close averaged over this many coarse ids (`ids_by_close`).
ORDER_COARSE_IDS = 4
# tokenizer -> (the state of its weights, its `ids_by_close`), recomputed when weights change
_ID_ORDERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0) -> torch.Tensor:
    """Scale by 1/temperature, keep the `top_k` largest, then the top-p nucleus of those.

    Returns a new float32 tensor of the same shape with -inf on removed ids; the input is not
    modified. The nucleus is the smallest set of ids whose probability reaches `top_p` under
    the top-k-restricted distribution; it always holds the most likely id (see `nucleus`).
    """
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth_largest = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p < 1.0:
        kept = nucleus(logits.softmax(-1), top_p, top_k or NUCLEUS_CANDIDATES)
        logits = logits.masked_fill(~kept, float("-inf"))
    return logits


def nucleus(probs: torch.Tensor, top_p: float,
            candidates: int = NUCLEUS_CANDIDATES) -> torch.Tensor:
    """Boolean mask (..., V) of the top-p nucleus of each row of probabilities (..., V).

    Ids are ranked by probability, equal ones by lower id first. An id is kept when the ids
    ranked before it hold less than `top_p`: the float32 cumulative sum of the probabilities,
    largest first, up to the id, minus its own (so the most likely id always is). The ranking
    is found among the `candidates` most likely ids of each row; only the rows whose nucleus
    reaches past them sort their whole vocabulary.
    """
    rows = probs.reshape(-1, probs.shape[-1])  # (N, V)
    k = min(candidates, rows.shape[-1])
    if bool((rows.amax(-1) * k < top_p).all()):  # no nucleus fits in k ids: sort at once
        k = rows.shape[-1]
    top = rows.topk(k, dim=-1).values  # (N, k), largest first
    n_kept, least = _nucleus_size(top, top_p)
    if k < rows.shape[-1]:
        longer = (n_kept[:, 0] == k).nonzero()[:, 0]  # every candidate kept: look further
        if len(longer):
            ranked = rows[longer].sort(dim=-1, descending=True).values
            n_kept[longer], least[longer] = _nucleus_size(ranked, top_p)
    kept = rows >= least
    if bool((kept.sum(-1, keepdim=True) > n_kept).any()):  # ids tied with it, not all kept
        tied = rows == least
        room = n_kept - (rows > least).sum(-1, keepdim=True)
        kept &= ~tied | (tied.cumsum(-1) <= room)
    return kept.view(probs.shape)


def _nucleus_size(ranked: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept count (N, 1) among the largest probabilities (N, k), sorted, and the least kept."""
    n_kept = (ranked.cumsum(-1) - ranked < top_p).sum(-1, keepdim=True)
    return n_kept, ranked.gather(-1, n_kept - 1)


def sample_ids(logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Draw one id per row of (N, V) logits by inverting the CDF at (N,) uniforms in [0, 1).

    The target is kept below the CDF's end (a product that rounds up to it would fall past
    the last id of positive probability, onto one that filtering removed), so the first id
    whose CDF exceeds it always has positive probability.
    """
    cdf = logits.softmax(-1).cumsum(-1)
    total = cdf[:, -1:]
    target = torch.minimum(uniforms.to(cdf.dtype).unsqueeze(-1) * total,
                           torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, target, right=True).squeeze(-1)


def series_key(asset: object = None, column: object = None) -> str:
    """The name that seeds a series' paths, the same from every face (pipeline, forecaster,
    command line): its asset key (None for a lone series) and, for a frame forecast column
    by column, the column."""
    return repr((asset, column))


def series_seeds(random_state: int | None, keys: Sequence[bytes | str]) -> list[int]:
    """One seed per series from `random_state` and a key naming the series.

    Seeds depend on the key, not on the series' position, so a series gets the same paths
    whatever else is in the batch. `random_state=None` draws fresh entropy.
    """
    if random_state is None:
        random_state = int(np.random.SeedSequence().entropy % 2**63)
    seeds = []
    for key in keys:
        data = key if isinstance(key, bytes) else str(key).encode()
        digest = hashlib.blake2b(data, digest_size=8, key=str(int(random_state)).encode()[:64])
        seeds.append(int.from_bytes(digest.digest(), "little") >> 1)
    return seeds


def path_uniforms(seeds: Sequence[int], n_samples: int, horizon: int,
                  stratified: bool = False) -> torch.Tensor:
    """Uniforms (n_series * n_samples, horizon, 2) for the coarse and fine draws of each path.

    Path (series i, sample s) has its own generator seeded from (seeds[i], s), so its draws do
    not depend on the batch or on the order of series. Independent (`stratified=False`), they
    do not depend on `n_samples` either. Stratified (Latin hypercube sampling, McKay, Beckman
    and Conover 1979), the `n_samples` uniforms of a series at each step and draw fall one in
    each stratum ``[k / n_samples, (k + 1) / n_samples)``: path s takes stratum ``perm(s)``,
    the permutations independent across steps and draws and seeded by (seeds[i],
    n_samples), so every path is still uniform at each step and independent across steps.
    """
    uniforms = redraw_uniforms([(seed, sample) for seed in seeds for sample in range(n_samples)],
                               0, horizon)
    if not stratified or n_samples == 1:
        return uniforms
    uniforms = uniforms.view(len(seeds), n_samples, horizon, 2)
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng([int(seed), n_samples, 1])
        strata = np.argsort(rng.random((n_samples, horizon, 2)), axis=0)
        uniforms[i] = (torch.from_numpy(strata).float() + uniforms[i]) / n_samples
    # (n - 1 + u) / n can round up to 1 in float32: keep every draw in [0, 1)
    return uniforms.view(len(seeds) * n_samples, horizon, 2).clamp_(max=1 - 2 ** -24)


@torch.no_grad()
def ids_by_close(tokenizer: KronosTokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Coarse and fine ids ordered by the (normalised) close they decode to, lowest first.

    A coarse id alone is decoded by the tokenizer's coarse head; a fine id with each of
    `ORDER_COARSE_IDS` coarse ids, its close averaged. Each is decoded as a one-token
    sequence. Stratified draws invert the CDF in this order (`path_uniforms`), so their
    strata are low to high prices rather than arbitrary sets of ids. Kept per tokenizer
    until its weights change (loaded, trained or moved).
    """
    weights = tuple((p.data_ptr(), p._version) for p in tokenizer.parameters())
    cached = _ID_ORDERS.get(tokenizer)
    if cached is not None and cached[0] == weights:
        return cached[1]
    n1, n2 = tokenizer.config.s1_bits, tokenizer.config.s2_bits
    close = FEATURE_COLUMNS.index("close")
    device, dtype = tokenizer.head.weight.device, tokenizer.head.weight.dtype
    coarse_ids = torch.arange(2 ** n1, device=device)
    bits = (ids_to_bits(coarse_ids, n1) * tokenizer.bsq.scale).to(dtype)
    coarse_close = tokenizer._decode_latent(bits[:, None], None, coarse_only=True)[:, 0, close]
    spaced = torch.linspace(0, 2 ** n1 - 1, ORDER_COARSE_IDS, device=device).long()
    fine_ids = torch.arange(2 ** n2, device=device)
    pairs = torch.cartesian_prod(spaced, fine_ids)  # (ORDER_COARSE_IDS * 2 ** n2, 2)
    fine_close = tokenizer.decode(pairs[:, :1], pairs[:, 1:])[:, 0, close]
    fine_close = fine_close.view(ORDER_COARSE_IDS, 2 ** n2).mean(0)
    # A stable sort: ties (bfloat16 weights decode fewer distinct closes) break by id alike
    # on every device.
    orders = (torch.argsort(coarse_close.float(), stable=True),
              torch.argsort(fine_close.float(), stable=True))
    _ID_ORDERS[tokenizer] = (weights, orders)
    return orders


def redraw_uniforms(paths: Sequence[tuple[int, int]], attempt: int,
                    horizon: int) -> torch.Tensor:
    """Uniforms (len(paths), horizon, 2) of the (series seed, sample) paths at an attempt:
    attempt 0 is the path's first independent draw (`path_uniforms` without stratification),
    attempt k its k-th redraw; redraws are independent."""
    blocks = []
    for seed, sample in paths:
        entropy = [int(seed), sample] + ([attempt] if attempt else [])
        state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(state) >> 1)
        blocks.append(torch.rand(horizon, 2, generator=generator))
    return torch.stack(blocks)


def _empty_caches(module_blocks, batch: int, capacity: int, like: torch.Tensor) -> list[KVCache]:
    return [KVCache.empty(batch, block.self_attn.n_heads, capacity, block.self_attn.head_dim,
                          like.dtype, like.device) for block in module_blocks]


def _context_cache(batch: int, attention, n_context: int, n_samples: int, room: int,
                   like: torch.Tensor) -> KVCache:
    """An empty cache for the contexts of `batch` series whose `n_samples` paths each add up to
    `room` entries after it (see `_for_paths`): a lone path writes straight after its context,
    so its cache gets that room now."""
    capacity = n_context + (room if n_samples == 1 else 0)
    return KVCache.empty(batch, attention.n_heads, capacity, attention.head_dim, like.dtype,
                         like.device)


def _context_caches(module_blocks, batch: int, n_context: int, n_samples: int, room: int,
                    like: torch.Tensor) -> list[KVCache]:
    return [_context_cache(batch, block.self_attn, n_context, n_samples, room, like)
            for block in module_blocks]


def _for_paths(cache: KVCache, n_samples: int, room: int) -> KVCache | SharedPrefixCache:
    """A filled context cache as its paths see it: shared by the samples of each series, or,
    for one sample, the cache itself (one fused attention over one buffer is faster)."""
    return cache if n_samples == 1 else SharedPrefixCache(cache, n_samples, room)


class _Sampler:
    """Draws the (coarse, fine) ids of one step for every path."""

    def __init__(self, predictor: KronosPredictor, uniforms: torch.Tensor, temperature: float,
                 top_k: int, top_p: float, id_order: tuple[torch.Tensor, torch.Tensor] | None):
        self.predictor, self.uniforms = predictor, uniforms
        self.settings = (temperature, top_k, top_p)
        self.filtering = self.settings != (1.0, 0, 1.0)
        self.orders = (None, None) if id_order is None else tuple(
            order.to(uniforms.device) for order in id_order)

    def __call__(self, step: int, h_last: torch.Tensor, dep_cache: KVCache | SharedPrefixCache,
                 dep_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.predictor
        # h_last: (P, 1, d); the dependency cache holds the whole window's hidden states.
        coarse_order, fine_order = self.orders
        coarse = self._draw(p.coarse_logits(h_last[:, 0]), self.uniforms[:, step, 0],
                            coarse_order)
        query = p.embedding.emb_s1(coarse).unsqueeze(1)  # (P, 1, d)
        fine_logits = p.head.proj_s2(p.dep_layer.step(h_last, query, dep_cache, dep_mask))
        return coarse, self._draw(fine_logits[:, 0], self.uniforms[:, step, 1], fine_order)

    def _draw(self, logits: torch.Tensor, uniforms: torch.Tensor,
              order: torch.Tensor | None) -> torch.Tensor:
        if self.filtering:
            logits = filter_logits(logits, *self.settings)
        if order is None:
            return sample_ids(logits.float(), uniforms)
        return order[sample_ids(logits[:, order].float(), uniforms)]


@torch.no_grad()
def generate_tokens(predictor: KronosPredictor, s1_ids: torch.Tensor, s2_ids: torch.Tensor,
                    stamps: torch.Tensor, horizon: int, uniforms: torch.Tensor, *,
                    valid: torch.Tensor | None = None, n_samples: int = 1,
                    max_context: int = 512, temperature: float = 1.0, top_k: int = 0,
                    top_p: float = 1.0, sliding: str = "exact",
                    prefill_precision: str = "float32",
                    id_order: tuple[torch.Tensor, torch.Tensor] | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `n_samples` continuations of each context with a key/value cache.

    Parameters
    ----------
    predictor : KronosPredictor
    s1_ids, s2_ids : Tensor
        (B, T) int64 context token ids, left-padded where `valid` is False.
    stamps : Tensor
        (B, T + horizon, 5) calendar stamps of the context and of the future rows.
    horizon : int
    uniforms : Tensor
        (B * n_samples, horizon, 2) draws from `path_uniforms`.
    valid : Tensor or None, default=None
        (B, T) bool, True on real tokens.
    n_samples, max_context, temperature, top_k, top_p, sliding, prefill_precision
        As for `forecast_paths`.
    id_order : (Tensor, Tensor) or None, default=None
        The order of the coarse and of the fine ids in which the uniforms invert the CDF
        (`ids_by_close`; None: id order).

    Returns
    -------
    coarse, fine : (B * n_samples, horizon) int64, paths of series i at rows
        i * n_samples ... (i + 1) * n_samples - 1.
    """
    B, T_full = s1_ids.shape
    S, H, M = n_samples, horizon, max_context
    T = min(T_full, M)  # the predictor only ever sees the last max_context tokens
    s1_ids, s2_ids, stamps = s1_ids[:, -T:], s2_ids[:, -T:], stamps[:, T_full - T:]
    if valid is not None:
        valid = valid[:, -T:]
        valid = None if bool(valid.all()) else valid
    P = B * S
    sample = _Sampler(predictor, uniforms.to(s1_ids.device), temperature, top_k, top_p,
                      id_order)
    dtype_like = predictor.norm.weight
    device = s1_ids.device
    bf16 = resolve_dtype(prefill_precision, device, "prefill_precision") == torch.bfloat16

    def batched() -> torch.autocast:  # the passes over many tokens, compute bound
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    stamps_p = stamps.repeat_interleave(S, 0)
    # key_valid[:, j]: is buffer position j (context then generated tokens) a real token?
    key_valid = None
    if valid is not None:
        key_valid = torch.cat((valid, valid.new_ones(B, H)), 1).repeat_interleave(S, 0)
        n_valid = valid.sum(1, keepdim=True).repeat_interleave(S, 0)  # (P, 1)
    coarse = s1_ids.new_empty(P, H)
    fine = s2_ids.new_empty(P, H)

    def window_mask(start: int, end: int) -> torch.Tensor | None:
        return None if key_valid is None else key_valid[:, None, None, start:end]

    # Phase 1: cached steps, as long as the window does not slide (exact) or always (rolling).
    # The context's keys and values are stored once per series, each path's tokens after them.
    n_cached = H if sliding == "rolling" else min(H, M - T + 1)
    caches = _context_caches(predictor.transformer, B, T, S, n_cached, dtype_like)
    dep_attn = predictor.dep_layer.cross_attn
    dep_cache = _context_cache(B, dep_attn, T, S, n_cached, dtype_like)
    with batched():
        h = predictor.hidden(s1_ids, s2_ids, stamps[:, :T], valid, caches=caches)  # (B, T, d)
        dep_attn.extend_cache(h, dep_cache)
    caches = [_for_paths(cache, S, n_cached) for cache in caches]
    dep_cache = _for_paths(dep_cache, S, n_cached)
    h_last = h[:, -1:].repeat_interleave(S, 0)
    positions = torch.arange(T + n_cached, device=device)
    for i in range(n_cached):
        if i > 0:
            end = T + i  # the token drawn at step i - 1 sits at end - 1
            start = max(0, end - M)
            for cache in caches + [dep_cache]:
                cache.start = start
            position = n_valid + i - 1 if key_valid is not None else positions[end - 1:end]
            h_last = predictor.hidden(coarse[:, i - 1:i], fine[:, i - 1:i],
                                      stamps_p[:, end - 1:end], caches=caches,
                                      positions=position, mask=window_mask(start, end))
            dep_attn.extend_cache(h_last, dep_cache)
        coarse[:, i], fine[:, i] = sample(i, h_last, dep_cache,
                                          window_mask(dep_cache.start, dep_cache.length))
    del caches, dep_cache

    # Phase 2 (exact only): the window [start, end) slides; recompute it at every step. Its
    # context part is causal-first, so it is computed and stored once per series, not per
    # sample, for the self-attention and for the dependency layer alike.
    for i in range(n_cached, H):
        end = T + i
        start = end - M
        shared = max(0, T - start)
        first = T + max(0, start - T)  # buffer position of the first generated token in view
        room = end - first  # generated tokens in view
        if shared:
            shared_valid = None if valid is None else valid[:, start:]
            caches = _context_caches(predictor.transformer, B, shared, S, room, dtype_like)
            dep_cache = _context_cache(B, dep_attn, shared, S, room, dtype_like)
            with batched():
                h_shared = predictor.hidden(s1_ids[:, start:], s2_ids[:, start:],
                                            stamps[:, start:T], shared_valid, caches=caches)
                dep_attn.extend_cache(h_shared, dep_cache)
            caches = [_for_paths(cache, S, room) for cache in caches]
            dep_cache = _for_paths(dep_cache, S, room)
        else:
            caches = _empty_caches(predictor.transformer, P, M, dtype_like)
            dep_cache = KVCache.empty(P, dep_attn.n_heads, M, dep_attn.head_dim,
                                      dtype_like.dtype, device)
        positions = torch.arange(room, device=device)
        if key_valid is not None:
            positions = positions + key_valid[:, start:first].sum(1, keepdim=True)
        else:
            positions = positions + shared
        keys = (key_valid[:, start:end] if key_valid is not None
                else torch.ones(P, end - start, dtype=torch.bool, device=device))
        with batched():
            h_new = predictor.hidden(coarse[:, first - T:i], fine[:, first - T:i],
                                     stamps_p[:, first:end], caches=caches,
                                     positions=positions,
                                     mask=attention_mask(keys, room, causal=True))
            dep_attn.extend_cache(h_new, dep_cache)  # the window: shared part, then this path's
        coarse[:, i], fine[:, i] = sample(i, h_new[:, -1:], dep_cache,
                                          window_mask(start, end))
    return coarse, fine


@torch.no_grad()
def generate_tokens_recompute(predictor: KronosPredictor, s1_ids: torch.Tensor,
                              s2_ids: torch.Tensor, stamps: torch.Tensor, horizon: int,
                              uniforms: torch.Tensor, *, n_samples: int = 1,
                              max_context: int = 512, temperature: float = 1.0, top_k: int = 0,
                              top_p: float = 1.0,
                              id_order: tuple[torch.Tensor, torch.Tensor] | None = None,
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The released algorithm step by step: every step re-runs the whole window, no cache.

    Same contract as `generate_tokens` without padding; kept as the ground truth that the
    cached generation is tested and benchmarked against.
    """
    S, M = n_samples, max_context
    s1 = s1_ids.repeat_interleave(S, 0)
    s2 = s2_ids.repeat_interleave(S, 0)
    stamps = stamps.repeat_interleave(S, 0)
    T = s1.shape[1]
    sample = _Sampler(predictor, uniforms.to(s1.device), temperature, top_k, top_p, id_order)
    dep_attn = predictor.dep_layer.cross_attn
    for i in range(horizon):
        end = T + i
        start = max(0, end - M)
        h = predictor.hidden(s1[:, start:], s2[:, start:], stamps[:, start:end])
        dep_cache = KVCache.empty(h.shape[0], dep_attn.n_heads, h.shape[1], dep_attn.head_dim,
                                  h.dtype, h.device)
        dep_attn.extend_cache(h, dep_cache)
        coarse, fine = sample(i, h[:, -1:], dep_cache, None)
        s1 = torch.cat((s1, coarse[:, None]), 1)
        s2 = torch.cat((s2, fine[:, None]), 1)
    return s1[:, T:], s2[:, T:]


@torch.no_grad()
def decode_paths(tokenizer: KronosTokenizer, s1_ids: torch.Tensor, s2_ids: torch.Tensor,
                 coarse: torch.Tensor, fine: torch.Tensor, *, valid: torch.Tensor | None = None,
                 n_samples: int = 1, max_context: int = 512) -> torch.Tensor:
    """Decode generated ids (B * S, H) in the context of the last tokens -> (B * S, H, d_in).

    As released, the decoder sees the last `max_context` tokens of context plus path (here at
    least the H generated ones); the context part is decoded and cached once per series.
    """
    B, T = s1_ids.shape
    S, H = n_samples, coarse.shape[1]
    P = B * S
    window = min(max(max_context, H), T + H)
    start = T + H - window
    prefix_valid = None if valid is None else valid[:, start:]
    blocks = tokenizer.decoder
    like = tokenizer.head.weight
    if T - start:
        caches = _context_caches(blocks, B, T - start, S, H, like)
        tokenizer.decode(s1_ids[:, start:], s2_ids[:, start:], prefix_valid, caches=caches)
        caches = [_for_paths(cache, S, H) for cache in caches]
    else:
        caches = _empty_caches(blocks, P, window, like)
    if prefix_valid is None:
        prefix_valid = torch.ones(B, T - start, dtype=torch.bool, device=s1_ids.device)
    prefix_valid = prefix_valid.repeat_interleave(S, 0)
    positions = torch.arange(H, device=s1_ids.device) + prefix_valid.sum(1, keepdim=True)
    keys = torch.cat((prefix_valid, prefix_valid.new_ones(P, H)), 1)
    return tokenizer.decode(coarse, fine, caches=caches, positions=positions,
                            mask=attention_mask(keys, H, causal=True))


def check_sampling(n_samples: int, temperature: float, top_k: int, top_p: float,
                   max_context: int, sliding: str) -> None:
    """Raise ValueError naming the first invalid sampling setting."""
    checks = [
        ("n_samples", n_samples, isinstance(n_samples, Integral) and n_samples >= 1,
         "a positive integer"),
        ("temperature", temperature, isinstance(temperature, Real) and temperature > 0
         and np.isfinite(temperature), "a positive finite number"),
        ("top_k", top_k, isinstance(top_k, Integral) and top_k >= 0,
         "a non-negative integer (0 disables it)"),
        ("top_p", top_p, isinstance(top_p, Real) and 0 < top_p <= 1, "in (0, 1]"),
        ("max_context", max_context, isinstance(max_context, Integral) and max_context >= 1,
         "a positive integer"),
        ("sliding", sliding, sliding in SLIDING_MODES, f"one of {SLIDING_MODES}"),
    ]
    for name, value, ok, expected in checks:  # numpy scalars count as their Python type
        if isinstance(value, (bool, np.bool_)) or not ok:
            raise ValueError(f"{name} must be {expected}, got {value!r}")


def _check_lengths(contexts, context_stamps, horizon: int, max_context: int, names: list):
    """Reject too-short contexts, cut very long ones (warning), warn on long horizons."""
    limit = CONTEXT_LIMIT_FACTOR * max_context
    contexts, context_stamps = list(contexts), list(context_stamps)
    for i, context in enumerate(contexts):
        if len(context) < MIN_CONTEXT_ROWS:
            raise ValueError(f"{names[i]}: a context of {len(context)} row(s) is too short to "
                             f"forecast from; give at least {MIN_CONTEXT_ROWS}")
        if len(context) > limit:
            warnings.warn(f"{names[i]}: context of {len(context)} rows cut to its last {limit} "
                          f"({CONTEXT_LIMIT_FACTOR} x max_context); the predictor sees only "
                          f"the last {max_context}", UserWarning, stacklevel=3)
            contexts[i], context_stamps[i] = context[-limit:], context_stamps[i][-limit:]
    if horizon > max_context:
        warnings.warn(f"horizon {horizon} exceeds max_context {max_context}: the last steps "
                      "are generated from generated tokens only", UserWarning, stacklevel=3)
    return contexts, context_stamps


def forecast_paths(tokenizer: KronosTokenizer, predictor: KronosPredictor,
                   contexts: Sequence[np.ndarray], context_stamps: Sequence[np.ndarray],
                   future_stamps: np.ndarray, *, n_samples: int = DEFAULT_N_SAMPLES,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = DEFAULT_TOP_P,
                   max_context: int = 512,
                   seeds: Sequence[int] | None = None, random_state: int | None = None,
                   sliding: str = "exact", clip: float = DEFAULT_CLIP,
                   max_paths: int = DEFAULT_MAX_PATHS,
                   prefill_precision: str = "float32", valid_candles: bool = True,
                   spread: Spread = Spread(), stratified: bool = True,
                   names: Sequence[str] | None = None, return_redraws: bool = False,
                   ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Sample future candles for a batch of series; every path, in original units.

    Parameters
    ----------
    tokenizer : KronosTokenizer
    predictor : KronosPredictor
    contexts : sequence of ndarray
        (T_i, d_in) float arrays, one per series; lengths may differ.
    context_stamps : sequence of ndarray
        (T_i, 5) int arrays (minute, hour, weekday, day, month).
    future_stamps : ndarray
        (B, H, 5) int array, the stamps of the H rows to forecast.
    n_samples : int, default=DEFAULT_N_SAMPLES (20)
        Paths per series.
    temperature, top_k, top_p : float, int, float, default=1.0, 0, DEFAULT_TOP_P (1.0)
        Sampling filters, see `filter_logits`; `top_k=1` is greedy.
    max_context : int, default=512
        The predictor's window, in tokens.
    seeds : sequence of int or None, default=None
        One seed per series; default: derived from `random_state` and each context's
        values, so a series gets the same paths whatever else is in the batch.
    random_state : int or None, default=None
    sliding : {"exact", "rolling"}, default="exact"
        See the module docstring.
    clip : float, default=5.0
        Normalised values are clipped to [-clip, clip].
    max_paths : int, default=256
        At most this many paths (series x samples) are generated at once.
    prefill_precision : {"float32", "bfloat16"}, default="float32"
        Precision of the predictor's passes over many tokens: the contexts, and with
        ``sliding="exact"`` the window recomputed at each step once it slides. "bfloat16" runs
        them under bfloat16 autocast, faster where bfloat16 is native (CPUs with AVX-512 BF16
        or AMX, recent GPUs; it warns elsewhere) at a small accuracy cost (see
        benchmarks/bench_precision.py); "float32" runs them in the predictor's own precision.
        The one-token steps, the tokenizer and the caches keep the model's precision.

    valid_candles : bool, default=True
        True: every path is a valid candle sequence (`make_candles_valid`) and, for a
        series whose context prices are positive, has positive prices (the positive-price
        rule, see `_redraw_nonpositive`: a path with a price <= 0 is drawn again from its
        own seed). False: the reference's raw decoding.
    spread : Spread, default=Spread() (as sampled)
        With `valid_candles`, the valid paths are adjusted by it: their mean drawn towards
        the last close, then widened, the candles' open gaps drawn from their context's
        and wicks no longer than its, and the mean's candles drawn in alike
        (`kronos_sk.calibration.apply_spread`; a checkpoint's own, from its inference.json).
    stratified : bool, default=True
        Draw the paths of each series stratified (`path_uniforms`, in the order of
        `ids_by_close`): each path is an exact draw of the model, and together they cover
        its distribution more evenly than independent draws. False: independent paths, each
        the same whatever `n_samples` is.
    names : sequence of str or None, default=None
        How messages name each series (default "series i").
    return_redraws : bool, default=False
        Also return the (B, 2) counts of paths redrawn and replaced by the rule.

    Returns
    -------
    ndarray of shape (B, n_samples, H, d_in), float32, on the CPU.
        With `return_redraws`, a tuple (paths, counts).
    """
    check_sampling(n_samples, temperature, top_k, top_p, max_context, sliding)
    check_positive_int(max_paths, "max_paths")
    if not isinstance(stratified, (bool, np.bool_)):
        raise ValueError(f"stratified must be True or False, got {stratified!r}")
    future_stamps = np.asarray(future_stamps)
    B, H = len(contexts), future_stamps.shape[1]
    names = [f"series {i}" for i in range(B)] if names is None else list(names)
    contexts, context_stamps = _check_lengths(contexts, context_stamps, H, max_context, names)
    if seeds is None:
        seeds = series_seeds(random_state, [np.ascontiguousarray(c, np.float64).tobytes()
                                            for c in contexts])
    transform = tokenizer.config.value_transform
    for name, context in zip(names, contexts):
        check_model_space(context, transform, name)
    normalizer = Normalizer.fit(contexts, clip, transform)
    out = np.empty((B, n_samples, H, tokenizer.config.d_in), dtype=np.float32)
    stratified = stratified and n_samples > 1
    settings = dict(max_context=max_context, temperature=temperature, top_k=top_k,
                    top_p=top_p, sliding=sliding, prefill_precision=prefill_precision,
                    id_order=ids_by_close(tokenizer) if stratified else None)

    def sample(rows: list[int], uniforms: torch.Tensor, per_row: int) -> np.ndarray:
        """Decoded paths (len(rows), per_row, H, d_in) in original units of these series."""
        part = normalizer.rows(rows)
        decoded = _sample_rows(tokenizer, predictor, [contexts[i] for i in rows],
                               [context_stamps[i] for i in rows], future_stamps[rows], part,
                               uniforms, per_row, settings)
        decoded = part.inverse_transform(decoded.reshape(len(rows), per_row, H, -1))
        return make_candles_valid(decoded) if valid_candles else decoded

    per_chunk = max(1, max_paths // n_samples)
    for lo in range(0, B, per_chunk):
        rows = list(range(lo, min(B, lo + per_chunk)))
        out[rows] = sample(rows, path_uniforms([seeds[i] for i in rows], n_samples, H,
                                               stratified), n_samples)
    redraws = np.zeros((B, 2), dtype=np.int64)
    if valid_candles:
        positive = np.array([(np.asarray(c)[:, :4] > 0).all() for c in contexts])
        redraws = _redraw_nonpositive(out, sample, seeds, names, max_paths, positive)
        if spread.adjusts:  # in log space where every path kept positive prices
            apply_spread(out, spread, positive & (out[..., :4] > 0).all(axis=(1, 2, 3)),
                         np.array([np.asarray(c)[-1, FEATURE_COLUMNS.index("close")]
                                   for c in contexts]), contexts)
    return (out, redraws) if return_redraws else out


def _sample_rows(tokenizer: KronosTokenizer, predictor: KronosPredictor, contexts: list,
                 context_stamps: list, future_stamps: np.ndarray, normalizer: Normalizer,
                 uniforms: torch.Tensor, n_samples: int, settings: dict) -> np.ndarray:
    """Normalised decoded paths (len(contexts) * n_samples, H, d_in) of a batch of series,
    left-padded to the longest context."""
    H = future_stamps.shape[1]
    device = tokenizer.head.weight.device
    lengths = [len(c) for c in contexts]
    T = max(lengths)
    values = np.zeros((len(contexts), T, tokenizer.config.d_in), dtype=np.float32)
    stamps = np.zeros((len(contexts), T + H, 5), dtype=np.int64)
    valid = np.zeros((len(contexts), T), dtype=bool)
    for j, (context, n) in enumerate(zip(contexts, lengths)):
        values[j, T - n:] = context
        stamps[j, T - n:T] = context_stamps[j]
        valid[j, T - n:] = True
    stamps[:, T:] = future_stamps
    x = torch.from_numpy(normalizer.transform(values)).to(device, tokenizer.head.weight.dtype)
    valid_t = None if valid.all() else torch.from_numpy(valid).to(device)
    s1, s2 = tokenizer.encode(x, valid_t)
    coarse, fine = generate_tokens(predictor, s1, s2, torch.from_numpy(stamps).to(device), H,
                                   uniforms, valid=valid_t, n_samples=n_samples, **settings)
    decoded = decode_paths(tokenizer, s1, s2, coarse, fine, valid=valid_t,
                           n_samples=n_samples, max_context=settings["max_context"])
    return decoded.float().cpu().numpy()


def _redraw_nonpositive(paths: np.ndarray, sample, seeds: Sequence[int], names: list,
                        max_paths: int, positive: np.ndarray) -> np.ndarray:
    """Apply the positive-price rule to valid paths (B, S, H, d_in) in place.

    Only series whose context prices are all positive (`positive`, (B,) bool) are
    conditioned: a flat series of returns or spreads may well go below zero.

    A path whose open, high, low or close is <= 0 is drawn again, from fresh uniforms of its
    own seed (`redraw_uniforms`), up to `MAX_REDRAWS` times: an accepted path is a draw from
    the model's distribution conditioned on positive prices. A path still rejected then is
    replaced by a copy of an accepted path of its series, picked with its seed (a draw from
    the accepted paths). Returns (B, 2) counts of redrawn and replaced paths per series.
    """
    counts = np.zeros((len(paths), 2), dtype=np.int64)
    bad = (paths[..., :4] <= 0).any(axis=(2, 3))  # (B, S)
    bad[~positive] = False  # a series whose own prices reach <= 0 is not a price series
    counts[:, 0] = bad.sum(1)
    for attempt in range(1, MAX_REDRAWS + 1):
        # Series with as many rejected paths go together, their paths sharing the context.
        by_count: dict[int, list[int]] = {}
        for i in np.flatnonzero(bad.any(axis=1)):
            by_count.setdefault(int(bad[i].sum()), []).append(int(i))
        for k, rows in by_count.items():
            per_chunk = max(1, max_paths // k)
            for lo in range(0, len(rows), per_chunk):
                block = rows[lo:lo + per_chunk]
                rejected = [np.flatnonzero(bad[i]) for i in block]
                uniforms = redraw_uniforms([(seeds[i], int(s)) for i, samples in
                                            zip(block, rejected) for s in samples],
                                           attempt, paths.shape[2])
                redrawn = sample(block, uniforms, k)  # (len(block), k, H, d_in)
                for i, samples, new in zip(block, rejected, redrawn):
                    paths[i, samples] = new
                    bad[i, samples] = (new[..., :4] <= 0).any(axis=(1, 2))
        if not bad.any():
            break
    for i in np.flatnonzero(bad.any(axis=1)):
        accepted = np.flatnonzero(~bad[i])
        if not len(accepted):
            warnings.warn(f"{names[i]}: no sampled path kept positive prices after "
                          f"{MAX_REDRAWS} redraws; its paths hold prices <= 0",
                          UserWarning, stacklevel=4)
            continue
        rejected = np.flatnonzero(bad[i])
        picks = np.random.default_rng([int(seeds[i]), MAX_REDRAWS]).choice(accepted,
                                                                           len(rejected))
        paths[i, rejected] = paths[i, picks]
        counts[i, 1] = len(rejected)
    share = counts[:, 0] / paths.shape[1]
    for i in np.flatnonzero(share > REDRAW_WARNING_SHARE):
        warnings.warn(f"{names[i]}: {counts[i, 0]} of {paths.shape[1]} sampled paths had a "
                      f"price <= 0 and were drawn again ({counts[i, 1]} replaced by accepted "
                      "paths); the context may be far outside what the model knows",
                      UserWarning, stacklevel=4)
    return counts
