"""Schedules and parameter groups added after the schedule was made (gradual unfreezing adds
one per stage to the same optimizer): they join the schedule at the step it has reached."""
import numpy as np
import pytest

import minitl as tl
from minitl.optim.lr_scheduler import warmup_cosine_factor


def params(n=1):
    return [tl.nn.Parameter(np.zeros(2, dtype=np.float32)) for _ in range(n)]


def test_a_group_added_later_gets_the_current_multiplier():
    opt = tl.optim.Adam(params(), lr=1.0)
    sched = tl.optim.warmup_cosine(opt, 0, 10)
    for _ in range(4):
        sched.step()
    opt.add_param_group({"params": params(), "lr": 0.5})
    sched.refresh()  # as gradual unfreezing does right after adding the group
    factor = warmup_cosine_factor(4, 0, 10)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([factor, 0.5 * factor])
    assert opt.param_groups[1]["initial_lr"] == 0.5
    for _ in range(3):
        sched.step()
    factor = warmup_cosine_factor(7, 0, 10)
    assert sched.get_last_lr() == pytest.approx([factor, 0.5 * factor])


def test_a_group_added_later_joins_at_the_next_step_without_refresh():
    opt = tl.optim.SGD(params(), lr=1.0)
    sched = tl.optim.LambdaLR(opt, lambda step: 0.5 ** step)
    opt.add_param_group({"params": params(), "lr": 4.0})
    sched.step()
    assert sched.get_last_lr() == [0.5, 2.0]


def test_one_function_per_group_cannot_schedule_a_later_group():
    opt = tl.optim.SGD(params(), lr=1.0)
    sched = tl.optim.LambdaLR(opt, [lambda step: 1.0])
    opt.add_param_group({"params": params(), "lr": 4.0})
    with pytest.raises(ValueError, match="single function"):
        sched.step()


def test_state_dict_round_trip_keeps_the_groups_added_later():
    opt = tl.optim.SGD(params(), lr=1.0)
    sched = tl.optim.warmup_cosine(opt, 0, 10)
    sched.step()
    opt.add_param_group({"params": params(), "lr": 0.25})
    sched.refresh()
    sched.step()
    state = sched.state_dict()
    opt2 = tl.optim.SGD(params(), lr=1.0)  # rebuilt as the run was: the schedule, then the new group
    sched2 = tl.optim.warmup_cosine(opt2, 0, 10)
    opt2.add_param_group({"params": params(), "lr": 0.25})
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == pytest.approx(sched.get_last_lr())
