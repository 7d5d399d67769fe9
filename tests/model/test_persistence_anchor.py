"""persistence_anchor: the mixture forecasts the change from each node's last observed speed."""

import pytest
import torch

from stmgt.model import STMGT, STMGTConfig
from stmgt.model.stmgt import last_observed


def ring(n: int) -> torch.Tensor:
    src = torch.arange(n)
    return torch.cat([torch.stack([src, (src + 1) % n]), torch.stack([(src + 1) % n, src])], dim=1)


def inputs(batch=3, nodes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, 12, nodes, generator=g) > 0.3
    mask[0, -1, 0] = False            # node 0's last step missing: an earlier reading anchors it
    mask[1, :, 1] = False             # node 1 never observed in window 1: anchored at the mean (0)
    return dict(x=torch.randn(batch, 12, nodes, generator=g), mask=mask, edge_index=ring(nodes),
                weather=torch.randn(batch, 12, 3, generator=g), time_of_day=torch.rand(batch, 12, generator=g),
                day_of_week=torch.randint(0, 7, (batch, 12), generator=g),
                past_weather=torch.randn(batch, 12, 3, generator=g))


def built(**overrides) -> STMGT:
    torch.manual_seed(0)
    return STMGT(STMGTConfig(**overrides)).eval()


def test_last_observed_skips_missing_steps_and_falls_back_to_the_mean():
    batch = inputs()
    x, mask = batch["x"], batch["mask"]
    last = last_observed(x, mask)
    for b in range(x.shape[0]):
        for n in range(x.shape[2]):
            seen = mask[b, :, n].nonzero().flatten()
            expected = x[b, seen[-1], n] if len(seen) else torch.tensor(0.0)
            assert last[b, n] == expected
    assert last[1, 1] == 0 and last[0, 0] != x[0, -1, 0]
    torch.testing.assert_close(last_observed(x, None), x[:, -1])


def test_off_is_the_model_as_before():
    """Off (the default, and every checkpoint written before the option): the same weights from the
    same seed and the same outputs as a config that does not name it."""
    batch = inputs()
    before, off = built(), built(persistence_anchor=False)
    assert STMGTConfig().persistence_anchor is False
    assert STMGTConfig.from_dict({"hidden_dim": 96}).persistence_anchor is False
    for name, value in before.state_dict().items():
        assert torch.equal(value, off.state_dict()[name])
    for a, b in zip(before(**batch), off(**batch)):
        assert torch.equal(a, b)


def test_on_adds_the_last_observation_to_the_means_and_nothing_else():
    batch = inputs()
    off = built()
    on = STMGT(STMGTConfig(persistence_anchor=True)).eval()
    on.load_state_dict(off.state_dict())          # the same weights: no parameter is added
    means_off, stds_off, weights_off = off(**batch)
    means_on, stds_on, weights_on = on(**batch)
    anchor = last_observed(batch["x"], batch["mask"])[:, None, :, None]
    torch.testing.assert_close(means_on, means_off + anchor)
    assert torch.equal(stds_on, stds_off) and torch.equal(weights_on, weights_off)


@pytest.mark.parametrize("futures", [1, 2])
def test_an_untrained_anchored_model_forecasts_persistence(futures):
    """At initialisation the head's mean outputs are zero, so every component mean, and so the
    mixture mean, is the node's last observed value, whatever the inputs."""
    batch = inputs()
    batch["weather"] = batch["weather"].repeat(futures, 1, 1)
    net = built(persistence_anchor=True)
    means, stds, weights = net(**batch, futures=futures)
    expected = last_observed(batch["x"], batch["mask"]).repeat(futures, 1)[:, None, :].expand(-1, 12, -1)
    torch.testing.assert_close((weights * means).sum(-1), expected)
    assert (stds > 0).all()


def test_the_change_is_learnt():
    """The zeroed mean outputs still get a gradient, so training moves the forecast off persistence."""
    batch = inputs()
    net = built(persistence_anchor=True).train()
    means, _, weights = net(**batch)
    ((weights * means).sum(-1) - 1.0).pow(2).mean().backward()
    layer = net.mixture_head.output_layer
    mean_rows = layer.weight.grad.view(net.config.num_mixtures, 3, -1)[:, 0]
    assert mean_rows.abs().sum() > 0
