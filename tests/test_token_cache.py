"""AudioCraft's token cache for AudioGen data (`rr_audiocraft.data.token_cache`): the stock writer's
files read back by `InfoBatchLoader`, cycling over the cached epochs; the shrunk demo in test_demo.py
runs the whole path (cache-writing XPs, then LMs reading it)."""
import dataclasses
from pathlib import Path

import pytest
import torch

from conftest import run_dora
from audiocraft.data.audio_dataset import AudioMeta
from audiocraft.data.info_audio_dataset import AudioInfo
from audiocraft.data.sound_dataset import SoundInfo
from audiocraft.utils.cache import CachedBatchWriter
from rr_audiocraft.data.token_cache import CacheableSoundInfo, InfoBatchLoader, allow_cached_infos


def sound_info(name: str, description: str) -> SoundInfo:
    meta = AudioMeta(path=f'/clips/{name}.wav', duration=4., sample_rate=16000)
    return SoundInfo(meta=meta, seek_time=0., n_frames=64000, total_frames=64000, sample_rate=16000, channels=1,
                     description=description)


def test_a_sound_info_becomes_one_the_stock_writer_accepts_with_the_same_conditions():
    info = sound_info('a', 'a dog barks twice')
    info.rr_caption_recurs = False  # RR's mark from the collater travels with it
    cacheable = CacheableSoundInfo.of(info)
    assert isinstance(cacheable, AudioInfo) and isinstance(cacheable, SoundInfo)
    assert cacheable.audio_tokens is None and cacheable.rr_caption_recurs is False
    # Stock turns every field into a text attribute (conditioners read only theirs): one more, as MusicInfo.
    ours, stock = cacheable.to_condition_attributes().text, info.to_condition_attributes().text
    assert ours == {**stock, 'audio_tokens': None} and ours['description'] == 'a dog barks twice'
    for field in dataclasses.fields(info):
        assert getattr(cacheable, field.name) is getattr(info, field.name)


def write_cache(folder: Path, epochs: int, batches: int, batch_size: int = 4) -> None:
    """The stock writer, as a cache-writing XP calls it (one `save(infos)` per training batch)."""
    allow_cached_infos()
    writer = CachedBatchWriter(folder)
    for epoch in range(1, epochs + 1):
        writer.start_epoch(epoch)
        for index in range(batches):
            infos = [CacheableSoundInfo.of(sound_info(f'{epoch}-{index}-{b}', f'caption {epoch} {index} {b}'))
                     for b in range(batch_size)]
            for b, info in enumerate(infos):
                info.audio_tokens = torch.full((4, 200), epoch * 100 + index * 10 + b, dtype=torch.short)
            writer.save(infos)


def test_the_stock_cache_reads_back_as_info_batches_cycling_over_its_epochs(tmp_path):
    write_cache(tmp_path, epochs=2, batches=3)
    loader = InfoBatchLoader(tmp_path, batch_size=4, num_workers=1, min_length=3)
    seen = {}
    for epoch in (1, 2, 3, 4):
        loader.start_epoch(epoch)
        batches = list(loader)
        assert len(batches) == 3 and len(loader) == 3
        [infos] = batches[0]
        assert [type(info) for info in infos] == [CacheableSoundInfo] * 4
        assert infos[2].description == f'caption {1 + (epoch - 1) % 2} 0 2'
        assert int(infos[2].audio_tokens[0, 0]) == (1 + (epoch - 1) % 2) * 100 + 2
        seen[epoch] = [info.description for [batch] in batches for info in batch]
    assert seen[3] == seen[1] and seen[4] == seen[2] and seen[1] != seen[2]
    # A smaller batch reads the first items of each cached batch; a bigger one is refused by name.
    small = InfoBatchLoader(tmp_path, batch_size=2, num_workers=1, min_length=3)
    small.start_epoch(1)
    assert [len(batch) for [batch] in small] == [2, 2, 2]
    big = InfoBatchLoader(tmp_path, batch_size=8, num_workers=1, min_length=3)
    big.start_epoch(1)
    with pytest.raises(RuntimeError, match=r'batches of 4 items, 8 needed'):
        list(big)
    # An LM asking for more updates per epoch than the cache holds is told so.
    long = InfoBatchLoader(tmp_path, batch_size=4, num_workers=1, min_length=5)
    long.start_epoch(1)
    with pytest.raises(RuntimeError, match=r'epoch 1 has 3 batches, 5 are needed'):
        list(long)


def test_an_empty_or_unfinished_cache_is_named_before_training(tmp_path):
    loader = InfoBatchLoader(tmp_path, batch_size=4, num_workers=1, min_length=1)
    with pytest.raises(RuntimeError, match='no epoch written; run the cache-writing XPs first'):
        loader.start_epoch(1)
    write_cache(tmp_path, epochs=1, batches=1)
    (tmp_path / '00003').mkdir()  # shard 3 of 3 done, shard 2 not yet
    with pytest.raises(RuntimeError, match=r'epochs \[1, 3\] written, 1..2 expected'):
        loader.start_epoch(1)


def test_reading_the_cache_with_no_loader_threads_is_refused_with_the_key_to_set(tiny_data, tmp_path):
    from rr_audiocraft.data.synth import datasource_overrides
    proc = run_dora('run', 'solver=rr_audiogen/tiny', *datasource_overrides(tiny_data), f'cache.path={tmp_path}',
                    'dataset.num_workers=0', check=False, timeout=300)
    assert proc.returncode != 0
    assert 'dataset.num_workers=0; set it to 1 or more' in proc.stderr
