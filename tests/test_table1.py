"""`rr_audiocraft.table1`: the one definition of a Table 1 row, as grids, explorers, demo and study read it."""
import pytest

from rr_audiocraft.table1 import BASELINE, BEST_RR, DEFAULT_ROWS, NO_RR, TABLE1, Row


def test_rows_read_back_from_their_label_their_record_and_the_config_they_train():
    from rr_audiocraft.train import main
    assert len(TABLE1) == 9 and len(set(TABLE1)) == 9 and BASELINE in TABLE1 and DEFAULT_ROWS == (BASELINE, BEST_RR)
    for row in TABLE1:
        assert Row.parse(row.label) == row and Row.from_record(row.record()) == row
        overrides = [f'{key}={value}' for key, value in row.overrides().items()]
        assert Row.from_cfg(main.get_xp(['solver=rr_audiogen/tiny', *overrides]).cfg) == row
    assert BASELINE.label == f'{NO_RR}/0.1/0' and BASELINE.record() == [NO_RR, 0.1, 0.0]
    assert Row.parse('none/0.1/0') == BASELINE and 'rr.pooling' not in BASELINE.overrides()
    # λ = 0 trains no RR whatever the config's pooling: the row says none.
    assert Row.from_cfg(main.get_xp(['solver=rr_audiogen/tiny', 'rr.weight=0', 'rr.pooling=average']).cfg) == BASELINE


@pytest.mark.parametrize('pooling, cfg, weight, message', [
    ('mean', 0.1, 3., 'pooling must be max, average or none'), (None, 0.1, 3., 'give a pooling with λ > 0'),
    ('max', 0.1, 0., 'give a pooling with λ > 0'), ('max', 1.0, 3., r'CFG dropout must be in \[0, 1\)'),
])
def test_a_row_that_is_not_one_is_refused(pooling, cfg, weight, message):
    with pytest.raises(ValueError, match=message):
        Row(pooling, cfg, weight)
