"""The temperature-fallback policy: which rows of a decoded batch are decoded again, how, and which try is kept.

A row that fails the quality checks (`decoding.needs_fallback`) and was prompted with previous text is
decoded once more without it; an unlikely row then keeps its best beam result, while a loop is sampled
at each higher temperature until a try passes or loops like the one before it. Every decode goes in
stages (`staged`): to a fraction of the token cap first, the rest again in full only where it neither
ended nor looped by then. The policy decodes through `DecodeRows`, so it never touches the model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from .decoding import Decoded, DecodeSettings, loops, needs_fallback, pick_best, stuck_in_a_loop, too_repetitive

log = logging.getLogger(__name__)

DecodeRows = Callable[[list[int], list[list[int]], float, "int | None"], list[Decoded]]
"""decode(rows, their prompts, temperature, cap on new tokens or None) -> one Decoded per row."""
CountStat = Callable[[str, int], None]


def decode_with_fallback(
    decode: DecodeRows,
    prompts: list[list[int]],
    settings: DecodeSettings,
    seconds: list[float],
    sot: int,
    head: int,
    count: CountStat,
) -> list[Decoded]:
    """Every row decoded at the first temperature, failed rows again as the policy says; `prompts` is
    changed in place where a row is decoded again without its previous text. `seconds`: each row's
    audio length (bounds its new tokens); `sot`: the start-of-transcript token; `head`: the tokens
    before a prompt's previous text (sot_prev and the hotwords, which a retry keeps)."""
    temperatures = settings.temperatures or (0.0,)
    everything = list(range(len(prompts)))
    results = staged(decode, everything, prompts, settings, temperatures[0], seconds, settings.first_stage, count)
    tried: list[list[Decoded]] = [[r] for r in results]
    pending = [i for i, r in enumerate(results) if needs_fallback(r, settings)]
    pending = _retry_without_previous_text(decode, prompts, settings, results, tried, pending, seconds, sot, head,
                                           count)
    if not settings.sample_unlikely:  # an unlikely chunk keeps its best beam result; loops go on
        looping = [i for i in pending if too_repetitive(results[i], settings)]
        for i in set(pending) - set(looping):
            results[i] = pick_best(tried[i], settings)
        pending = looping
    for temperature in temperatures[1:]:
        if not pending:
            break
        log.debug("fallback to t=%.1f for %d of %d chunks", temperature, len(pending), len(prompts))
        retry = staged(decode, pending, prompts, settings, temperature, seconds, settings.retry_stage, count)
        still = []
        for i, result in zip(pending, retry, strict=True):
            tried[i].append(result)
            results[i] = result
            if needs_fallback(result, settings):
                if stuck_in_a_loop(tried[i], settings):
                    results[i] = pick_best(tried[i], settings)
                else:
                    still.append(i)
        pending = still
    for i in pending:
        results[i] = pick_best(tried[i], settings)
    return results


def _retry_without_previous_text(
    decode: DecodeRows,
    prompts: list[list[int]],
    settings: DecodeSettings,
    results: list[Decoded],
    tried: list[list[Decoded]],
    pending: list[int],
    seconds: list[float],
    sot: int,
    head: int,
    count: CountStat,
) -> list[int]:
    """Failed rows that were prompted with previous text are decoded once more without it (a loop is
    often the previous text's doing); returns the rows that still fail."""
    prompted = [i for i in pending if prompts[i].index(sot) > head]
    if not prompted or not settings.temperatures or settings.temperatures[0] > 0:
        return pending
    for i in prompted:  # the hotwords stay
        kept = prompts[i][:head] if head > 1 else []
        prompts[i] = [*kept, *prompts[i][prompts[i].index(sot) :]]
    retry = staged(decode, prompted, prompts, settings, settings.temperatures[0], seconds, settings.retry_stage,
                   count)
    for i, result in zip(prompted, retry, strict=True):
        tried[i].append(result)
        results[i] = result
    return [i for i in pending if needs_fallback(results[i], settings)]


def staged(
    decode: DecodeRows,
    rows: list[int],
    prompts: list[list[int]],
    settings: DecodeSettings,
    temperature: float,
    seconds: list[float],
    stage: float | None,
    count: CountStat,
) -> list[Decoded]:
    """Rows `rows` decoded at `temperature`, first to `stage` of their token cap; a try that has ended
    or fallen into a loop by then is kept (a loop would run to the cap, and the caller drops it or
    decodes it again), the rest is decoded again to the whole cap."""
    results: dict[int, Decoded] = {}
    todo = list(rows)
    full = settings.token_cap(max(seconds[i] for i in rows))
    caps = [None] if stage is None or full is None else [max(1, math.ceil(full * stage)), None]
    for cap in caps:
        decoded = decode(todo, [prompts[i] for i in todo], temperature, cap)
        results.update(zip(todo, decoded, strict=True))
        todo = [i for i in todo if results[i].reached_cap and not loops(results[i], settings)]
        if cap is not None:
            count("loops_stopped_early", sum(r.reached_cap and loops(r, settings) for r in decoded))
        if not todo:
            break
    return [results[i] for i in rows]
