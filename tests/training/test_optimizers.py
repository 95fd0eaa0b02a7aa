"""The device-scheduled optimizers must make exactly the updates PyTorch's make with float hyperparameters."""
import pytest
import torch

from speedrun.training.optimizers import (
    OPTIMIZER_NAMES,
    OptimizerConfig,
    ParamGroup,
    build_optimizer,
)

STEPS = 12


def _reference(name: str, param: torch.nn.Parameter, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    wd = dict(weight_decay=cfg.weight_decay)
    return {
        "sgd": lambda: torch.optim.SGD([param], lr=1.0, momentum=cfg.momentum, nesterov=cfg.nesterov, **wd),
        "adam": lambda: torch.optim.Adam([param], lr=1.0, **wd),
        "adamw": lambda: torch.optim.AdamW([param], lr=1.0, **wd),
        "rmsprop": lambda: torch.optim.RMSprop([param], lr=1.0, momentum=cfg.momentum, **wd),
        "adagrad": lambda: torch.optim.Adagrad([param], lr=1.0, **wd),
        "adadelta": lambda: torch.optim.Adadelta([param], lr=1.0, **wd),
        # Muon's groups that are not orthogonalized (the biases, the head) are momentum SGD.
        "muon": lambda: torch.optim.SGD([param], lr=1.0, momentum=cfg.momentum, nesterov=cfg.nesterov, **wd),
    }[name]()


def _cases():
    for name in OPTIMIZER_NAMES:
        yield name, False
        if name in ("sgd", "adam", "adamw"):
            yield name, True


@pytest.mark.parametrize("name,cycled", list(_cases()))
def test_matches_pytorch_step_by_step(name, cycled):
    torch.manual_seed(0)
    lr = torch.linspace(0.05, 0.001, STEPS)
    momentum = torch.linspace(0.85, 0.95, STEPS) if cycled else None
    cfg = OptimizerConfig(name=name, nesterov=name in ("sgd", "muon"), weight_decay=5e-4)
    ours = torch.nn.Parameter(torch.randn(7, 3))
    theirs = torch.nn.Parameter(ours.detach().clone())
    scheduled = build_optimizer([ParamGroup([ours])], cfg, lr, momentum)
    reference = _reference(name, theirs, cfg)
    for t in range(STEPS):
        grad = torch.randn(7, 3)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        scheduled.step()
        group = reference.param_groups[0]
        group["lr"] = float(lr[t])
        if cycled and name == "sgd":
            group["momentum"] = float(momentum[t])
        elif cycled:
            group["betas"] = (float(momentum[t]), group["betas"][1])
        reference.step()
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert int(scheduled.counter) == STEPS


def test_lr_scale_per_group_and_last_value_held_past_the_end():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    lr = torch.tensor([0.1, 0.2])
    opt = build_optimizer([ParamGroup([a]), ParamGroup([b], lr_scale=3.0, weight_decay=0.0)],
                          OptimizerConfig(momentum=0.0, nesterov=False, weight_decay=0.0), lr)
    used = []
    for _ in range(4):
        a.grad, b.grad = torch.ones(2), torch.ones(2)
        opt.step()
        used += [float(opt.optimizer.param_groups[0]["lr"]), float(opt.optimizer.param_groups[1]["lr"])]
    assert used == pytest.approx([0.1, 0.3, 0.2, 0.6, 0.2, 0.6, 0.2, 0.6])


def test_cycled_momentum_needs_an_optimizer_with_momentum():
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="cycle_momentum"):
        build_optimizer([ParamGroup([p])], OptimizerConfig(name="adagrad"), torch.ones(3), torch.ones(3))


@pytest.mark.parametrize("kwargs,field", [
    (dict(name="lamb"), "name must be one of sgd"), (dict(momentum=1.5), "momentum"),
    (dict(weight_decay=-1.0), "weight_decay"), (dict(momentum=0.0, nesterov=True), "nesterov"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        OptimizerConfig(**kwargs)
