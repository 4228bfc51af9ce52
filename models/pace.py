"""This machine's training pace on texts of the data's length: one MiniLM-L6 step, timed by
``init`` before it prices ``run``.

The unit of models/workload.py, one training example through MiniLM-L6, is priced by a formula
fitted on a 2-core AMD EPYC, where a text's length cost the most of the machines measured. On a
2-core Sapphire Rapids Xeon (bfloat16 on AMX) the pipeline's examples took 7.2, 9.0 and 19.0 ms
at 11, 16 and 70 pieces against the formula's 6.5, 8.7 and 32: support tickets of 70 pieces
were priced 1.55x too long, and ``init`` sampled them harder than ``--hours`` needed
(BENCHMARKS.md, 2026-12-06). A bare training step at the data's length, plus what the pipeline
adds to each example, follows such a machine; the formula stays the bound it lowers.
"""

from __future__ import annotations

import statistics
import time

# Seconds per example the pipeline adds to a bare step (collation, the distillation loss,
# logging): 3.2 and 3.1 ms at 16 and 70 pieces on the 2-core Xeon above.
PIPELINE_OVERHEAD = 3.1e-3
BATCH = 32
STEPS = 3


def unit_seconds(pieces: float) -> float:
    """One unit on this machine, on texts of ``pieces`` pieces: the median of ``STEPS`` training
    steps of ``BATCH`` texts, after one to warm up, through a MiniLM-L6 of random weights (in
    bfloat16 where the pipeline trains so), per text, plus ``PIPELINE_OVERHEAD``. About a second
    on 2 cores at 70 pieces."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from models.finetune import native_bf16
    from models.workload import MINILM_L6

    generator = torch.Generator().manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**MINILM_L6, num_labels=2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    length = max(1, round(pieces)) + 2  # [CLS] and [SEP]
    ids = torch.randint(1_000, 30_000, (BATCH, length), generator=generator)
    labels = torch.randint(0, 2, (BATCH,), generator=generator)
    bf16 = native_bf16()
    times = []
    for _ in range(STEPS + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]) / BATCH + PIPELINE_OVERHEAD
