"""``parley bench vad``: what the Silero VAD costs per 32 ms frame on one thread.

A timing target belongs here rather than in a unit test: the figure depends on the machine and on what
else it runs, so a test would pass or fail with the CI box's load, not with the code.
"""

from __future__ import annotations

import time

import numpy as np

from parley.audio.silero import SileroVAD

TARGET_MEDIAN_MS = 3.0
"""Well above the ~0.1-0.2 ms measured on a 2-core CI machine; past it, threading or spinning went wrong."""


def run_vad_bench(seconds: float = 10.0, seed: int = 0) -> dict[str, float | int | bool]:
    """Feed ``seconds`` of -30 dBFS white noise frame by frame to one detector; per-frame figures in ms."""
    vad = SileroVAD(16000)
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal(int(seconds * 16000)) * 32768.0 * 10 ** (-30 / 20)
    pcm = np.clip(np.round(samples), -32768, 32767).astype(np.int16)
    frames = [
        pcm[i : i + vad.frame_samples] for i in range(0, pcm.size - vad.frame_samples + 1, vad.frame_samples)
    ]
    timings = []
    for frame in frames:
        started = time.perf_counter()
        vad.probability(frame)
        timings.append(time.perf_counter() - started)
    per_frame_ms = np.array(timings) * 1000
    median = float(np.median(per_frame_ms))
    return {
        "frames": len(frames),
        "frame_ms": vad.frame_samples * 1000 // 16000,
        "median_ms": round(median, 4),
        "p95_ms": round(float(np.percentile(per_frame_ms, 95)), 4),
        "max_ms": round(float(per_frame_ms.max()), 4),
        "target_median_ms": TARGET_MEDIAN_MS,
        "within_target": median < TARGET_MEDIAN_MS,
    }
