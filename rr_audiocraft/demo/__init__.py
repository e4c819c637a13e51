"""`make demo`: a miniature Table 1 of arXiv 2309.08773, offline, on a 2-core CPU (`python -m rr_audiocraft.demo`).

Stages, each cached so a rerun picks up where the last one stopped (`pipeline.run`):
  1. codec    the shipped EnCodec (assets/encodec_synth_8khz, `make codec`), checked against its sha256
  2. data     synthetic captioned sounds (`rr_audiocraft.data.synth`) in data/synth (seed --data-seed)
  3. judge    the generator-independent judge, fitted on the training clips and their codec round trips
              (shipped in assets/judge_synth for the default benchmark and codec, `make judge`)
  4. scale    the judge on the clean test references, on their round trips (the ceiling for any LM) and
              on the references against every other clip's caption (the floor); `--until ceiling` stops here
  5. train    the LMs of the preset's solver config (`rr_audiogen/demo`, ...) for its Table 1 rows and seeds,
              through the tiny grid's explorer and `grid_local`, two XPs at a time, first its token-cache writers
  6. generate every trained LM renders the test captions with CFG (held-out source pairs); the first
              λ=0 LM also renders them without captions (the unconditional floor)
  7. report   judge metrics per XP, a Table-1-style table (mean ± 95 % CI over seeds), its results page
              (results/<preset>.md), plots, the generated wavs and a blind listening study.

Modules, by stage: `presets` (presets and the run's settings), `inputs` (codec, data, judge), `scale`,
`training`, `render` (generate and judge), `report` (table and page), `plots`, `study`; `pipeline` runs them
in order, `__main__` is the command line. The statistics are `rr_audiocraft.metrics.summary`.
"""
