"""A row of Table 1 of arXiv 2309.08773: the pooling of RR (or none), the CFG dropout ratio and the RR weight λ.

The one definition the grids (`dora_grids.rr_ablation*`), their explorers, the demo and the listening test
use. In code no RR is `pooling=None`; in text, tables and results.json it is written '–', as the paper's
Table 1 writes it (`NO_RR`); `Row.parse` also takes 'none' on the command line.
"""
import dataclasses
import typing as tp

from .regularization import POOLING_MODES

NO_RR = '–'  # how tables, labels and results.json write "no RR"
NO_RR_INPUTS = ('none', '-', NO_RR)  # what `Row.parse` reads as no RR (ASCII '-' too, as --rows always took)


@dataclasses.dataclass(frozen=True)
class Row:
    """One Table 1 setting.

    Attributes:
        pooling: RR's pooling ('max', 'average', ...), None for no RR (λ = 0).
        cfg: CFG dropout ratio in [0, 1).
        weight: λ, the weight of L_rr; 0 exactly when `pooling` is None.
    """
    pooling: tp.Optional[str]
    cfg: float
    weight: float

    def __post_init__(self) -> None:
        if self.pooling is not None and self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be {', '.join(POOLING_MODES)} or none (no RR), got {self.pooling!r}")
        if not 0 <= self.cfg < 1 or self.weight < 0:
            raise ValueError("CFG dropout must be in [0, 1) and λ >= 0")
        if (self.pooling is None) != (self.weight == 0):
            raise ValueError("give a pooling with λ > 0 and none with λ = 0")
        object.__setattr__(self, 'cfg', float(self.cfg))
        object.__setattr__(self, 'weight', float(self.weight))

    @property
    def pool(self) -> str:
        """The pooling as Table 1 writes it ('–': no RR)."""
        return NO_RR if self.pooling is None else self.pooling

    @property
    def label(self) -> str:
        """'POOL/CFG/λ', e.g. 'max/0.1/3' or '–/0.1/0' (what `parse` reads back)."""
        return f"{self.pool}/{self.cfg:g}/{self.weight:g}"

    def record(self) -> tp.List[tp.Any]:
        """[pool, CFG, λ] as results.json stores it."""
        return [self.pool, self.cfg, self.weight]

    @classmethod
    def from_record(cls, values: tp.Sequence[tp.Any]) -> 'Row':
        """The row of a `record()` (or of any (pool, CFG, λ) written with '–' or None for no RR)."""
        pool, cfg, weight = values
        return cls(None if pool in (None, *NO_RR_INPUTS) else pool, float(cfg), float(weight))

    @classmethod
    def parse(cls, text: str) -> 'Row':
        """'POOL/CFG/λ' (POOL 'none' or '–' for no RR), e.g. 'max/0.1/3', 'none/0.1/0'.

        Raises:
            ValueError: the text is not a valid row; the message names it.
        """
        item = text.strip()
        parts = item.split('/')
        if len(parts) != 3:
            raise ValueError(f"row {item!r} is not POOL/CFG/LAMBDA (e.g. max/0.1/3, none/0.1/0)")
        try:
            cfg, weight = float(parts[1]), float(parts[2])
        except ValueError:
            raise ValueError(f"row {item!r}: CFG and λ must be numbers") from None
        try:
            return cls(None if parts[0] in NO_RR_INPUTS else parts[0], cfg, weight)
        except ValueError as error:
            raise ValueError(f"row {item!r}: {error}") from None

    @classmethod
    def from_cfg(cls, cfg: tp.Any) -> 'Row':
        """The row an RR LM's XP config trains (its pooling is ignored when λ = 0: RR is then only measured)."""
        weight = float(cfg.rr.weight)
        return cls(cfg.rr.pooling if weight > 0 else None, float(cfg.classifier_free_guidance.training_dropout),
                   weight)

    def overrides(self) -> tp.Dict[str, tp.Any]:
        """The XP overrides of this row (no RR leaves the pooling at the solver config's value)."""
        overrides: tp.Dict[str, tp.Any] = {'classifier_free_guidance.training_dropout': self.cfg,
                                           'rr.weight': self.weight}
        if self.pooling is not None:
            overrides['rr.pooling'] = self.pooling
        return overrides


# Table 1, top to bottom.
TABLE1: tp.Tuple[Row, ...] = (
    Row('max', 0.1, 3.), Row('max', 0.1, 4.), Row('max', 0.1, 2.), Row('max', 0.1, 1.),
    Row(None, 0.2, 0.), Row(None, 0.1, 0.), Row(None, 0.0, 0.),
    Row('max', 0.2, 3.), Row('average', 0.1, 3.),
)
BASELINE = Row(None, 0.1, 0.)  # Table 1's (–, 0.1, 0): every other row is compared with it
BEST_RR = Row('max', 0.1, 3.)  # the paper's best RR row, compared with the baseline in its Table 4
DEFAULT_ROWS: tp.Tuple[Row, ...] = (BASELINE, BEST_RR)  # no RR against the best RR row


def parse_rows(text: str) -> tp.List[Row]:
    """Comma-separated rows (`Row.parse`), the baseline among them, none twice.

    Raises:
        ValueError: a row is invalid or repeated, or the baseline is missing.
    """
    rows: tp.List[Row] = []
    for item in text.split(','):
        row = Row.parse(item)
        if row in rows:
            raise ValueError(f"row {item.strip()!r} is given twice")
        rows.append(row)
    if BASELINE not in rows:
        raise ValueError(f"the rows must include the baseline none/{BASELINE.cfg:g}/0: every other row is "
                         "compared with it")
    return rows
