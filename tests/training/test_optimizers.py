"""The device-scheduled optimizers must make exactly the updates PyTorch's make with float hyperparameters."""
import pytest
import torch

from speedrun.parameters import OPTIMIZER_NAMES, OptimizerConfig, ParamGroup
from speedrun.training.optimizers import build_optimizer, merge_equal_groups

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


def _params(n: int) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.full((3,), float(i))) for i in range(n)]


def test_equal_groups_merge_in_order_of_first_appearance():
    a, b, c, d = _params(4)
    groups = [ParamGroup([a]), ParamGroup([b], lr_scale=2.0), ParamGroup([c]), ParamGroup([d], lr_scale=2.0)]
    merged = merge_equal_groups(groups)
    assert [[id(p) for p in g.params] for g in merged] == [[id(a), id(c)], [id(b), id(d)]]
    assert [g.lr_scale for g in merged] == [1.0, 2.0]


@pytest.mark.parametrize("field, value", [("lr_scale", 2.0), ("weight_decay", 0.0),
                                          ("orthogonalize", True), ("momentum", 0.5)])
def test_groups_that_differ_in_any_hyperparameter_stay_apart(field, value):
    a, b = _params(2)
    assert len(merge_equal_groups([ParamGroup([a]), ParamGroup([b], **{field: value})])) == 2


def test_a_group_holding_a_tensor_set_apart_stays_alone():
    a, b, c = _params(3)
    merged = merge_equal_groups([ParamGroup([a]), ParamGroup([b]), ParamGroup([c])], apart=[b])
    assert [[id(p) for p in g.params] for g in merged] == [[id(a), id(c)], [id(b)]]


def test_merged_groups_train_exactly_as_the_separate_ones():
    torch.manual_seed(0)
    cfg = OptimizerConfig(momentum=0.9, nesterov=True, weight_decay=5e-4)
    lr = torch.linspace(0.1, 0.01, STEPS)
    separate, merged_params = _params(3), _params(3)

    def groups(ps):
        return [ParamGroup([ps[0]]), ParamGroup([ps[1]], lr_scale=4.0), ParamGroup([ps[2]])]
    one = build_optimizer(groups(separate), cfg, lr)
    other = build_optimizer(merge_equal_groups(groups(merged_params)), cfg, lr)
    assert len(one.optimizer.param_groups) == 3 and len(other.optimizer.param_groups) == 2
    for _ in range(STEPS):
        grads = [torch.randn(3) for _ in range(3)]
        for p, q, g in zip(separate, merged_params, grads):
            p.grad, q.grad = g.clone(), g.clone()
        one.step()
        other.step()
    for p, q in zip(separate, merged_params):
        assert torch.equal(p, q)
