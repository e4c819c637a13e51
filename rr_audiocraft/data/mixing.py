"""Which captions of a batch can recur, under AudioGen's on-the-fly mixing.

Stock `SoundDataset.collater` mixes pairs of clips (`dataset.train.aug_p`, `mix_p`) and gives a mixed
clip the concatenation of the two captions: a string that almost never comes back. RR's caption cache
should keep only captions that come back (a dataset caption), and the collater's input holds exactly
those. `MarkRecurringCaptions` wraps the loader's collate function and marks every output item.
"""
import typing as tp

# Attribute set on each item's info: True when its description is one of the batch's loaded captions.
RECURS_ATTRIBUTE = 'rr_caption_recurs'


class MarkRecurringCaptions:
    """Collate function wrapper: the stock collater, then each info marked with `RECURS_ATTRIBUTE`.

    Picklable (a plain class), so it works with loader worker processes.

    Args:
        collater (callable): The stock collate function, taking [(wav, info), ...].
    """
    def __init__(self, collater: tp.Callable[[tp.List[tp.Any]], tp.Any]):
        self.collater = collater

    def __call__(self, samples: tp.List[tp.Any]) -> tp.Any:
        loaded = {getattr(info, 'description', None) for _, info in samples}
        wav, infos = self.collater(samples)
        for info in infos:
            setattr(info, RECURS_ATTRIBUTE, getattr(info, 'description', None) in loaded)
        return wav, infos


def caption_recurs(infos: tp.Sequence[tp.Any]) -> tp.List[bool]:
    """Per item, whether its caption can recur (unmarked items: no mixing, a dataset caption)."""
    return [bool(getattr(info, RECURS_ATTRIBUTE, True)) for info in infos]
