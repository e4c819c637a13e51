"""Independent judge of the synthetic benchmark (`rr_audiocraft.data.synth`).

- `detector`: the sound-event detector (`Judge`: fit, save / load, predict, score),
- `augment`: its training views (frame targets, codec-like degradations, mixing, shifts),
- `scores`: the benchmark metrics of its predictions (`score_predictions`, built on the per-clip
  `clip_outcomes` and `metrics_from_sums`; `frechet_distance`, `kl_divergence`).
"""
from .detector import JUDGE_VERSION, SAMPLE_RATE, Judge, JudgeConfig  # noqa: F401
from .scores import OUTCOME_KEYS, clip_outcomes, frechet_distance, kl_divergence, metrics_from_sums, score_predictions  # noqa: F401
