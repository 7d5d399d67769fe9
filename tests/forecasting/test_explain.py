"""The plain-words reading of one road, against hand-built diagnostics: the gate α of the chosen
block, neighbours ranked by the chosen head's attention at the chosen step, and the sentence."""

import pytest
import torch

from stmgt.forecasting.explain import RoadReading, describe_reading, road_reading
from stmgt.model import Diagnostics

NAMES = ["Le Loi", "Nguyen Hue", "Hai Ba Trung", "Pasteur"]


def diagnostics() -> Diagnostics:
    """Four roads; roads 1, 2 and 3 feed road 0, road 0 feeds road 1; self loops last. Two blocks,
    two input steps, two heads."""
    edge_index = torch.tensor([[1, 2, 3, 0, 0, 1, 2, 3],
                               [0, 0, 0, 1, 0, 1, 2, 3]])
    spatial = torch.zeros(2, 1, 2, 8, 2)
    # Block 2 (index 1), step 2 (index 1): road 0 weighs 1, 2, 3 and itself; head 1 and head 2 differ.
    spatial[1, 0, 1, :4, 0] = torch.tensor([0.10, 0.50, 0.15, 0.0])
    spatial[1, 0, 1, :4, 1] = torch.tensor([0.40, 0.20, 0.10, 0.0])
    spatial[1, 0, 1, 4] = torch.tensor([0.25, 0.30])                 # road 0's self loop
    alpha = torch.full((2, 1, 2, 4), 0.5)
    alpha[1, 0, :, 0] = torch.tensor([0.2, 0.3])                     # block 2 leans on road 0's own past
    alpha[0, 0, :, 0] = torch.tensor([0.8, 0.9])
    return Diagnostics(alpha=alpha, spatial_attention=spatial, attention_edge_index=edge_index,
                       temporal_attention=torch.zeros(2, 1, 4, 2, 2, 2), weather_attention=None)


def test_reading_follows_block_step_and_head():
    diag = diagnostics()
    mean = road_reading(diag, 0, block=1, step=1)
    assert mean.alpha == pytest.approx(0.25) and mean.itself == pytest.approx(0.275)
    assert [j for j, _ in mean.neighbours] == [2, 1, 3]
    assert [w for _, w in mean.neighbours] == pytest.approx([0.35, 0.25, 0.125])
    head_2 = road_reading(diag, 0, block=1, step=1, head=1)
    assert [j for j, _ in head_2.neighbours] == [1, 2, 3] and head_2.itself == pytest.approx(0.30)
    assert road_reading(diag, 0, block=0, step=1).alpha == pytest.approx(0.85)
    assert road_reading(diag, 2, block=1, step=1).neighbours == ()          # nothing flows into road 2


def test_sentence_names_the_lean_and_the_neighbours_in_order():
    sentence = describe_reading(road_reading(diagnostics(), 0, block=1, step=1), NAMES.__getitem__)
    assert sentence == ("Mostly its own recent past (gate α = 0.25: about 75 % from its own history); of its "
                        "neighbours it listens most to Hai Ba Trung (attention 0.35), then Nguyen Hue (0.25) "
                        "and 1 other.")
    spatial = describe_reading(road_reading(diagnostics(), 0, block=0, step=1), NAMES.__getitem__)
    assert spatial.startswith("Mostly its neighbours (gate α = 0.85: about 85 % from the roads around it)")


@pytest.mark.parametrize("reading, expected", [
    (RoadReading(0.52, 1.0, ()), "An even mix of its own recent past and its neighbours (gate α = 0.52); it has "
                                 "no upstream neighbour, so its graph attention stays on itself."),
    (RoadReading(0.7, 0.6, ((3, 0.4),)), "Mostly its neighbours (gate α = 0.70: about 70 % from the roads around "
                                         "it); its one upstream neighbour, Pasteur, gets attention 0.40."),
    (RoadReading(0.3, 0.2, ((1, 0.5), (2, 0.3))), "Mostly its own recent past (gate α = 0.30: about 70 % from its "
                                                  "own history); of its neighbours it listens most to Nguyen Hue "
                                                  "(attention 0.50), then Hai Ba Trung (0.30)."),
])
def test_sentence_for_few_or_no_neighbours(reading, expected):
    assert describe_reading(reading, NAMES.__getitem__) == expected
