"""AudioCraft's token cache (`cache.path`, `cache.write`) for AudioGen's sound datasets.

The stock cache writes each training batch's EnCodec tokens with its segment infos, so that later XPs
read tokens instead of encoding audio (`MusicGenSolver._prepare_tokens_and_attributes`). Two stock
details keep it from working with AudioGen data on the torch pinned here:
  1. the writer asserts each info is an `AudioInfo` (the class with `audio_tokens`), which MusicGen's
     `MusicInfo` is and AudioGen's `SoundInfo` is not;
  2. the reader's `torch.load` uses torch's default `weights_only=True` (torch >= 2.6), which refuses the
     pickled info dataclasses.
`CacheableSoundInfo` is a `SoundInfo` that is also an `AudioInfo` (same fields plus `audio_tokens`, and the
same condition attributes); `CacheableInfos` turns the collater's infos into it, and `allow_cached_infos`
lets `torch.load` read the classes a cached batch holds. Nothing else of the stock cache changes.
"""
import dataclasses
import typing as tp
import zipfile

import flashy

import torch

from audiocraft.data.audio_dataset import AudioMeta, SegmentInfo
from audiocraft.data.info_audio_dataset import AudioInfo
from audiocraft.data.sound_dataset import SoundInfo
from audiocraft.modules.conditioners import WavCondition
from audiocraft.utils.cache import CachedBatchLoader


@dataclasses.dataclass
class CacheableSoundInfo(SoundInfo, AudioInfo):
    """A `SoundInfo` the stock cache writer accepts (an `AudioInfo`: it carries `audio_tokens`)."""

    @classmethod
    def of(cls, info: SoundInfo) -> 'CacheableSoundInfo':
        out = cls(**{field.name: getattr(info, field.name) for field in dataclasses.fields(info)})
        out.__dict__.update({k: v for k, v in vars(info).items() if k not in out.__dict__})  # e.g. RR's marks
        return out


class CacheableInfos:
    """Collate function wrapper: the wrapped collater, then every `SoundInfo` as a `CacheableSoundInfo`.

    Picklable (a plain class), so it works with loader worker processes.
    """
    def __init__(self, collater: tp.Callable[[tp.List[tp.Any]], tp.Any]):
        self.collater = collater

    def __call__(self, samples: tp.List[tp.Any]) -> tp.Any:
        wav, infos = self.collater(samples)
        return wav, [CacheableSoundInfo.of(info) if isinstance(info, SoundInfo) else info for info in infos]


def allow_cached_infos() -> None:
    """Let `torch.load(weights_only=True)` (the stock cache reader) rebuild the infos of cached batches."""
    torch.serialization.add_safe_globals([CacheableSoundInfo, AudioMeta, SegmentInfo, WavCondition])


class InfoBatchLoader(CachedBatchLoader):
    """The stock cached-batch loader, reading back batches whose parts are not all tensors."""

    @classmethod
    def of(cls, stock: CachedBatchLoader) -> 'InfoBatchLoader':
        return cls(stock.cache_folder, stock.batch_size, stock.num_workers, stock.min_length)

    def start_epoch(self, epoch: int) -> None:
        """Read cached epoch 1 + (epoch - 1) % (epochs in the cache)."""
        cached = sorted(int(p.name) for p in self.cache_folder.glob('[0-9]' * 5) if p.is_dir())
        if not cached:
            raise RuntimeError(f"token cache {self.cache_folder}: no epoch written; run the cache-writing XPs first "
                               "(cache.write=true)")
        if cached != list(range(1, len(cached) + 1)):
            raise RuntimeError(f"token cache {self.cache_folder}: epochs {cached} written, 1..{len(cached)} expected; "
                               "let every cache-writing shard finish")
        super().start_epoch(1 + (epoch - 1) % len(cached))

    def _load_one(self, index: int) -> tp.Optional[tp.List[tp.Any]]:
        """This rank's share of cached batch `index` (None past the end of the epoch): one entry per
        part written, tensors stacked, anything else (the infos) as a list."""
        path = self._zip_path(index)
        if not path.exists():
            if index < self.min_length:
                raise RuntimeError(f"token cache {self.cache_folder}: epoch {self._current_epoch} has {index} "
                                   f"batches, {self.min_length} are needed (optim.updates_per_epoch); write "
                                   "the cache with the same epochs and updates")
            return None
        with zipfile.ZipFile(path, 'r') as archive:
            names = sorted(archive.namelist(), key=int)
            wanted = self.batch_size * flashy.distrib.world_size()
            if len(names) < wanted:
                raise RuntimeError(f"token cache {path}: batches of {len(names)} items, {wanted} needed "
                                   "(dataset.batch_size x ranks); write the cache with a batch at least that big")
            start = flashy.distrib.rank() * self.batch_size
            items = [torch.load(archive.open(name), 'cpu') for name in names[start:start + self.batch_size]]
        parts = list(zip(*items, strict=True))
        return [torch.stack(part) if isinstance(part[0], torch.Tensor) else list(part) for part in parts]
